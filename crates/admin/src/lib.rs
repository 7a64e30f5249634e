//! `carewoven-admin`: backup and restore of Carewoven's JetStream streams with the
//! server's snapshot API, which keeps every message's sequence, timestamp, subject and
//! headers exactly (the services depend on them: feed numbers, the access list's delivery
//! times, checkpoints keyed on the stream's name and creation time).
//!
//! Protocol (nats-server's JetStream API; async-nats has no helper for it):
//!
//! - **Snapshot**: subscribe to a deliver subject, then request
//!   `$JS.API.STREAM.SNAPSHOT.<stream>` with `{"deliver_subject", "no_consumers",
//!   "chunk_size"}`. The answer carries the stream's configuration and the state the
//!   snapshot holds; the server then sends the snapshot (an S2-compressed tar) in chunks to
//!   the deliver subject, each with a reply subject `$JS.SNAPSHOT.ACK.<stream>.…` to
//!   acknowledge (flow control), and ends with an empty message.
//! - **Restore**: request `$JS.API.STREAM.RESTORE.<stream>` with `{"config", "state"}`
//!   (refused if the stream exists); the answer names a deliver subject
//!   (`$JS.SNAPSHOT.RESTORE.<stream>.…`) to which the chunks are sent with a reply subject,
//!   each acknowledged by an empty reply, then an empty message whose reply is the restored
//!   stream's information or the server's error.
//!
//! Across accounts (`deploy/accounts.conf`, identity `backup`) everything the server sends
//! (a snapshot's chunks, a restore's acknowledgements and answer) is published in the
//! stream's own account on `cw.backup.<stream>.<random>`, outside every stream's subjects,
//! and exported to the backup account; a restore's chunks go out on
//! `cw.restore.<stream>.<id>` (see `chunk_subject`). Nothing here logs message content:
//! snapshots are bytes written to files.

pub mod manifest;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use manifest::{Manifest, StreamEntry, StreamState};

/// Carewoven's streams, in the order a backup takes them: the feeds and the audit first and
/// the event log last, so that everything a feed refers to (its items' log positions) is in
/// the log that is backed up, even if services kept writing meanwhile.
pub const STREAMS: [&str; 3] = ["CW_FEED", "CW_AUDIT", "CAREWOVEN"];

/// Chunk size of snapshots and restores (well below the servers' 1 MB max_payload).
pub const CHUNK: usize = 128 * 1024;

/// The prefix of every snapshot's deliver subject (`deploy/accounts.conf` exports
/// `cw.backup.<stream>.>` of each stream's account to the backup identity).
pub const DELIVER_PREFIX: &str = "cw.backup";

/// The prefix of a restore's chunks across accounts (see `chunk_subject`).
pub const RESTORE_PREFIX: &str = "cw.restore";

/// The tool's name and version, as written in manifests.
pub fn tool_version() -> String {
    format!("carewoven-admin {}", env!("CARGO_PKG_VERSION"))
}

/// How to reach NATS.
#[derive(Debug, Clone)]
pub struct Connection {
    pub url: String,
    /// The nkey seed (`SU...`) of the backup identity; none for a server without
    /// authentication (tests, development).
    pub nkey_seed: Option<String>,
    /// Per request; also how long a snapshot may go without a chunk.
    pub timeout: Duration,
}

impl Connection {
    /// Whether the server is one of `deploy/`'s, with accounts (an identity is given).
    pub fn accounts(&self) -> bool {
        self.nkey_seed
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty())
    }

    pub async fn connect(&self) -> Result<async_nats::Client> {
        let options = match self.nkey_seed.as_deref().map(str::trim) {
            Some(seed) if !seed.is_empty() => async_nats::ConnectOptions::with_nkey(seed.into()),
            _ => async_nats::ConnectOptions::new(),
        };
        options
            .name("carewoven-admin")
            .connection_timeout(self.timeout)
            .request_timeout(Some(self.timeout))
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("connecting to NATS at {}", self.url))
    }
}

/// What a backup wrote.
#[derive(Debug)]
pub struct BackupReport {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// Snapshot `streams` (in that order) into `out`: `<stream>.snapshot` each, then
/// `manifest.json`. `out` must not hold a backup already. `consumers` keeps the streams'
/// consumers (partners' durable consumers on `CW_FEED`) in the snapshots.
pub async fn backup(
    conn: &Connection,
    out: &Path,
    streams: &[String],
    consumers: bool,
) -> Result<BackupReport> {
    ensure!(!streams.is_empty(), "no stream to back up");
    if out.join(manifest::MANIFEST).exists() {
        bail!(
            "{} already holds a backup ({}); choose a new directory",
            out.display(),
            manifest::MANIFEST
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let client = conn.connect().await?;
    let info = client.server_info();
    let started_at = now();
    let mut entries = Vec::new();
    for stream in streams {
        let entry = snapshot(&client, conn.timeout, stream, out, consumers)
            .await
            .with_context(|| format!("backing up stream {stream}"))?;
        tracing::info!(
            stream = %entry.name,
            file = %entry.file,
            bytes = entry.bytes,
            messages = entry.state.messages,
            last_seq = entry.state.last_seq,
            "stream backed up"
        );
        entries.push(entry);
    }
    let manifest = Manifest {
        format: manifest::FORMAT,
        tool: tool_version(),
        server: manifest::ServerVersion {
            version: info.version,
            name: info.server_name,
        },
        started_at,
        finished_at: now(),
        streams: entries,
    };
    manifest.write(out)?;
    Ok(BackupReport {
        dir: out.to_owned(),
        manifest,
    })
}

/// Snapshot one stream into `<dir>/<stream>.snapshot`.
async fn snapshot(
    client: &async_nats::Client,
    timeout: Duration,
    stream: &str,
    dir: &Path,
    consumers: bool,
) -> Result<StreamEntry> {
    check_stream_name(stream)?;
    let info = stream_info(client, stream)
        .await?
        .with_context(|| format!("there is no stream {stream} on this server"))?;
    let created = info["created"].as_str().unwrap_or_default().to_owned();

    let deliver = format!(
        "{DELIVER_PREFIX}.{stream}.{}",
        uuid::Uuid::new_v4().simple()
    );
    let mut chunks = client.subscribe(deliver.clone()).await?;
    client.flush().await?;
    let request = serde_json::json!({
        "deliver_subject": deliver,
        "no_consumers": !consumers,
        "chunk_size": CHUNK,
    });
    let answer = api(
        client,
        &format!("$JS.API.STREAM.SNAPSHOT.{stream}"),
        request,
        "the snapshot",
    )
    .await?;
    let config = answer["config"].clone();
    ensure!(
        config.is_object(),
        "the server's answer to the snapshot of {stream} has no configuration"
    );
    let state = StreamState::from_json(&answer["state"])
        .with_context(|| format!("the server's answer to the snapshot of {stream}"))?;

    let file_name = format!("{stream}.snapshot");
    let path = dir.join(&file_name);
    let partial = dir.join(format!("{file_name}.partial"));
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    loop {
        let message = tokio::time::timeout(timeout, chunks.next())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the server sent no part of the snapshot of {stream} for {timeout:?} \
                     (after {bytes} bytes); is the deliver subject {DELIVER_PREFIX}.{stream}.> \
                     exported to this identity?"
                )
            })?
            .with_context(|| format!("the subscription to the snapshot of {stream} ended"))?;
        if let Some(status) = message.status {
            bail!(
                "the server ended the snapshot of {stream} with status {status} {}",
                message.description.unwrap_or_default()
            );
        }
        if message.payload.is_empty() {
            break;
        }
        file.write_all(&message.payload)
            .await
            .with_context(|| format!("writing {}", partial.display()))?;
        hasher.update(&message.payload);
        bytes += message.payload.len() as u64;
        if let Some(reply) = message.reply {
            client.publish(reply, Bytes::new()).await?;
        }
    }
    drop(chunks);
    ensure!(bytes > 0, "the snapshot of {stream} was empty");
    file.sync_all()
        .await
        .with_context(|| format!("writing {}", partial.display()))?;
    drop(file);
    tokio::fs::rename(&partial, &path)
        .await
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    manifest::sync_dir(dir);
    Ok(StreamEntry {
        name: stream.to_owned(),
        file: file_name,
        bytes,
        sha256: manifest::hex(&hasher.finalize()),
        created,
        config,
        state,
    })
}

/// What a restore did, per stream.
#[derive(Debug)]
pub struct Restored {
    pub name: String,
    pub state: StreamState,
    /// The restored stream's creation time: the time of the restore, not the original's
    /// (nats-server 2.15.1 does not keep it), so the services' checkpoints of the old
    /// stream are set aside and rebuilt from the restored log.
    pub created: String,
}

/// Restore every stream of the backup in `dir` onto the server: the files are checked
/// against the manifest first, and nothing is restored if any stream of the backup exists
/// already on the server. Each restored stream's state is then compared with the
/// manifest's, and its configuration (but for the server's own `_nats.` metadata).
pub async fn restore(conn: &Connection, dir: &Path) -> Result<Vec<Restored>> {
    let (manifest, _) = manifest::verify(dir)?;
    let client = conn.connect().await?;
    for entry in &manifest.streams {
        check_stream_name(&entry.name)?;
        if stream_info(&client, &entry.name).await?.is_some() {
            bail!(
                "stream {} already exists on this server: restore only onto a server without \
                 the backup's streams (nothing was restored)",
                entry.name
            );
        }
    }
    let mut out = Vec::new();
    // The log first: the feeds refer to its positions.
    let mut order: Vec<&StreamEntry> = manifest.streams.iter().collect();
    order.sort_by_key(|e| (e.name != "CAREWOVEN", e.name != "CW_AUDIT"));
    for entry in order {
        restore_stream(&client, conn.timeout, conn.accounts(), dir, entry)
            .await
            .with_context(|| format!("restoring stream {}", entry.name))?;
        let (state, created) = check_restored(&client, entry).await?;
        tracing::info!(
            stream = %entry.name,
            messages = state.messages,
            last_seq = state.last_seq,
            "stream restored"
        );
        out.push(Restored {
            name: entry.name.clone(),
            state,
            created,
        });
    }
    Ok(out)
}

async fn restore_stream(
    client: &async_nats::Client,
    timeout: Duration,
    accounts: bool,
    dir: &Path,
    entry: &StreamEntry,
) -> Result<()> {
    let path = dir.join(&entry.file);
    let mut file = tokio::fs::File::open(&path)
        .await
        .with_context(|| format!("opening {}", path.display()))?;
    let state = serde_json::json!({
        "messages": entry.state.messages,
        "bytes": entry.state.bytes,
        "first_seq": entry.state.first_seq,
        "last_seq": entry.state.last_seq,
        "first_ts": entry.state.first_ts,
        "last_ts": entry.state.last_ts,
    });
    let request = serde_json::json!({"config": entry.config, "state": state});
    let answer = api(
        client,
        &format!("$JS.API.STREAM.RESTORE.{}", entry.name),
        request,
        "the restore",
    )
    .await?;
    let deliver = answer["deliver_subject"]
        .as_str()
        .context("the server's answer to the restore names no deliver subject")?;
    let deliver = chunk_subject(deliver, &entry.name, accounts)?;
    // The server's acknowledgements and its final answer are published in the stream's
    // account on the reply subject: `cw.backup.<stream>.<random>`, which reaches this
    // identity as a snapshot's chunks do.
    let replies = format!(
        "{DELIVER_PREFIX}.{}.{}",
        entry.name,
        uuid::Uuid::new_v4().simple()
    );
    let mut answers = client.subscribe(replies.clone()).await?;
    client.flush().await?;
    let mut next_answer = async |what: &str, wait: Duration| -> Result<async_nats::Message> {
        tokio::time::timeout(wait, answers.next())
            .await
            .map_err(|_| anyhow::anyhow!("the server did not answer {what} within {wait:?}"))?
            .context("the subscription to the server's answers ended")
    };
    // Hashed again while sending: the file must not change between the check and the send.
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut sent = 0u64;
    loop {
        let n = read_full(&mut file, &mut buf)
            .await
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        sent += n as u64;
        client
            .publish_with_reply(
                deliver.clone(),
                replies.clone(),
                Bytes::copy_from_slice(&buf[..n]),
            )
            .await?;
        let ack = next_answer(&format!("a part of {}", path.display()), timeout).await?;
        if !ack.payload.is_empty() {
            bail!(
                "the server refused a part of {}: {}",
                path.display(),
                String::from_utf8_lossy(&ack.payload)
            );
        }
    }
    let sha256 = manifest::hex(&hasher.finalize());
    if sha256 != entry.sha256 || sent != entry.bytes {
        // The server restores nothing without the final empty message; it gives up on its
        // own once the transfer stalls.
        bail!(
            "the snapshot file {} changed while it was being restored (not finished)",
            path.display()
        );
    }
    // The end: an empty message, answered with the stream's information (or the server's
    // error) once the server has unpacked and checked the snapshot.
    client
        .publish_with_reply(deliver, replies, Bytes::new())
        .await?;
    let finish = timeout.max(Duration::from_secs(60)) * 4;
    let done = loop {
        let answer = next_answer("the end of the restore", finish).await?;
        if !answer.payload.is_empty() {
            break answer;
        }
    };
    let done: serde_json::Value = serde_json::from_slice(&done.payload)
        .context("the server's answer at the end of the restore is not JSON")?;
    if let Some(error) = done.get("error") {
        bail!("the server did not restore it: {}", describe(error));
    }
    Ok(())
}

/// Compare the restored stream with its manifest entry.
/// The restored state, and the restored stream's creation time.
async fn check_restored(
    client: &async_nats::Client,
    entry: &StreamEntry,
) -> Result<(StreamState, String)> {
    let info = stream_info(client, &entry.name).await?.with_context(|| {
        format!(
            "stream {} is not on the server after its restore",
            entry.name
        )
    })?;
    let state = StreamState::from_json(&info["state"])?;
    let mut differences = entry.state.differences(&state);
    for (key, expected) in entry.config.as_object().into_iter().flatten() {
        let found = &info["config"][key];
        let (expected, found) = if key == "metadata" {
            (without_server_keys(expected), without_server_keys(found))
        } else {
            (expected.clone(), found.clone())
        };
        if found != expected {
            differences.push(format!("config.{key}: expected {expected}, found {found}"));
        }
    }
    if !differences.is_empty() {
        bail!(
            "stream {} was restored but differs from the backup: {}",
            entry.name,
            differences.join("; ")
        );
    }
    Ok((
        state,
        info["created"].as_str().unwrap_or_default().to_owned(),
    ))
}

/// Stream metadata without the keys the server sets itself (`_nats.…`: its version and API
/// level, which a restore sets anew).
fn without_server_keys(metadata: &serde_json::Value) -> serde_json::Value {
    match metadata.as_object() {
        Some(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with("_nats."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => metadata.clone(),
    }
}

/// The server's information on `stream` (raw JSON), or `None` if there is no such stream.
pub async fn stream_info(
    client: &async_nats::Client,
    stream: &str,
) -> Result<Option<serde_json::Value>> {
    let subject = format!("$JS.API.STREAM.INFO.{stream}");
    let answer = client
        .request(subject, Bytes::new())
        .await
        .map_err(|e| no_access(e, &format!("information on stream {stream}")))?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload)
        .with_context(|| format!("the server's information on stream {stream} is not JSON"))?;
    match answer.get("error") {
        None => Ok(Some(answer)),
        // 10059: stream not found.
        Some(e) if e["err_code"] == 10059 || e["code"] == 404 => Ok(None),
        Some(e) => bail!("information on stream {stream}: {}", describe(e)),
    }
}

/// A JetStream API request; the server's error is the error.
async fn api(
    client: &async_nats::Client,
    subject: &str,
    body: serde_json::Value,
    what: &str,
) -> Result<serde_json::Value> {
    let stream = subject.rsplit('.').next().unwrap_or_default().to_owned();
    let answer = client
        .request(subject.to_owned(), body.to_string().into())
        .await
        .map_err(|e| no_access(e, &format!("{what} of stream {stream}")))?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload)
        .with_context(|| format!("the server's answer to {what} of {stream} is not JSON"))?;
    if let Some(error) = answer.get("error") {
        bail!("the server refused {what} of {stream}: {}", describe(error));
    }
    Ok(answer)
}

fn no_access(e: async_nats::RequestError, what: &str) -> anyhow::Error {
    use async_nats::RequestErrorKind;
    match e.kind() {
        RequestErrorKind::NoResponders => anyhow::anyhow!(
            "nothing on the server answers {what}: connect as the backup identity \
             (deploy/accounts.conf), and check the stream's name"
        ),
        RequestErrorKind::TimedOut => anyhow::anyhow!(
            "the server did not answer {what} in time (it ignores a request this identity \
             is not allowed to make: see its log for a Permissions Violation)"
        ),
        _ => anyhow::Error::new(e).context(what.to_owned()),
    }
}

fn describe(error: &serde_json::Value) -> String {
    format!(
        "{} (code {}, error {})",
        error["description"].as_str().unwrap_or("no description"),
        error["code"],
        error["err_code"]
    )
}

/// Where to send a restore's chunks. The server listens on `$JS.SNAPSHOT.RESTORE.<stream>.<id>`
/// in the stream's account. Across accounts (`deploy/accounts.conf`) the chunks cannot go
/// through a service import: the server adds a header to every message crossing one, which
/// the restore would take for data (measured on nats-server 2.15.1: the final empty message
/// is then never seen as the end). So the backup account exports `cw.restore.<stream>.>` as
/// a stream that the stream's account imports as `$JS.SNAPSHOT.RESTORE.<stream>.>`.
fn chunk_subject(deliver: &str, stream: &str, accounts: bool) -> Result<String> {
    let prefix = format!("$JS.SNAPSHOT.RESTORE.{stream}.");
    let id = deliver
        .strip_prefix(&prefix)
        .filter(|id| !id.is_empty() && !id.contains(['.', '*', '>', ' ']))
        .with_context(|| format!("the server named an unexpected restore subject {deliver:?}"))?;
    Ok(if accounts {
        format!("{RESTORE_PREFIX}.{stream}.{id}")
    } else {
        deliver.to_owned()
    })
}

/// Stream names become subject tokens: refuse anything that would change the subject.
fn check_stream_name(name: &str) -> Result<()> {
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
        "{name:?} is not a stream name (ASCII letters, digits, '_' and '-')"
    );
    Ok(())
}

async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
