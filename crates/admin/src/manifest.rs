//! The backup directory: one snapshot file per stream and `manifest.json`, which says what
//! each file must be (size, SHA-256) and what its stream held (configuration, state).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name in a backup directory.
pub const MANIFEST: &str = "manifest.json";

/// The manifest format this tool writes and reads.
pub const FORMAT: u32 = 1;

/// What a backup holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// The tool that wrote it (`carewoven-admin <version>`).
    pub tool: String,
    /// The nats-server that made the snapshots.
    pub server: ServerVersion,
    /// When the backup began and ended (RFC 3339, UTC).
    pub started_at: String,
    pub finished_at: String,
    /// One entry per stream, in the order they were taken.
    pub streams: Vec<StreamEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerVersion {
    pub version: String,
    pub name: String,
}

/// One stream's snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamEntry {
    pub name: String,
    /// The snapshot file, relative to the backup directory.
    pub file: String,
    pub bytes: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// The stream's creation time as the server reported it. A restore does not keep it
    /// (nats-server 2.15.1): the services key their checkpoints on the stream's name and
    /// creation time, so they rebuild them from the restored log.
    pub created: String,
    /// The stream's configuration, as the server gave it with the snapshot.
    pub config: serde_json::Value,
    /// The stream's state the snapshot holds.
    pub state: StreamState,
}

/// The parts of a stream's state a restore must reproduce exactly.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StreamState {
    pub messages: u64,
    pub bytes: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_ts: String,
    pub last_ts: String,
}

impl StreamState {
    /// From the server's JSON `state` object.
    pub fn from_json(state: &serde_json::Value) -> Result<Self> {
        let u = |key: &str| {
            state[key]
                .as_u64()
                .with_context(|| format!("the stream state has no {key}"))
        };
        let s = |key: &str| state[key].as_str().unwrap_or_default().to_owned();
        Ok(StreamState {
            messages: u("messages")?,
            bytes: u("bytes")?,
            first_seq: u("first_seq")?,
            last_seq: u("last_seq")?,
            first_ts: s("first_ts"),
            last_ts: s("last_ts"),
        })
    }

    /// What differs between `self` (expected) and `other`, as `field: expected, found`.
    pub fn differences(&self, other: &StreamState) -> Vec<String> {
        let mut out = Vec::new();
        let mut check = |field: &str, a: String, b: String| {
            if a != b {
                out.push(format!("{field}: expected {a}, found {b}"));
            }
        };
        check(
            "messages",
            self.messages.to_string(),
            other.messages.to_string(),
        );
        check("bytes", self.bytes.to_string(), other.bytes.to_string());
        check(
            "last_seq",
            self.last_seq.to_string(),
            other.last_seq.to_string(),
        );
        // An empty stream's first sequence and times say nothing (the server reports 0 or
        // last + 1, and the zero time or the restore's).
        if self.messages > 0 || other.messages > 0 {
            check(
                "first_seq",
                self.first_seq.to_string(),
                other.first_seq.to_string(),
            );
            check("first_ts", self.first_ts.clone(), other.first_ts.clone());
            check("last_ts", self.last_ts.clone(), other.last_ts.clone());
        }
        out
    }
}

impl Manifest {
    /// Read `<dir>/manifest.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the manifest {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("the manifest {} is not valid", path.display()))?;
        ensure!(
            manifest.format == FORMAT,
            "the manifest {} is of format {}; this tool reads format {FORMAT}",
            path.display(),
            manifest.format
        );
        for entry in &manifest.streams {
            ensure!(
                is_plain_file_name(&entry.file),
                "the manifest {} names the file {:?} for stream {}: only a file in the backup directory is allowed",
                path.display(),
                entry.file,
                entry.name
            );
        }
        Ok(manifest)
    }

    /// Write `<dir>/manifest.json` (through a temporary file, so a manifest is whole or absent).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST);
        let partial = dir.join(format!("{MANIFEST}.partial"));
        let text = serde_json::to_string_pretty(self)?;
        write_synced(&partial, text.as_bytes())?;
        std::fs::rename(&partial, &path)
            .with_context(|| format!("renaming {} into place", partial.display()))?;
        sync_dir(dir);
        Ok(())
    }

    /// The entry of stream `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamEntry> {
        self.streams.iter().find(|s| s.name == name)
    }
}

/// One file checked against its manifest entry.
#[derive(Debug, Clone)]
pub struct Checked {
    pub stream: String,
    pub file: PathBuf,
    pub bytes: u64,
}

/// Check every file the manifest names: present, of its size, with its SHA-256. The first
/// problem is the error, naming the stream and the file.
pub fn verify(dir: &Path) -> Result<(Manifest, Vec<Checked>)> {
    let manifest = Manifest::read(dir)?;
    ensure!(
        !manifest.streams.is_empty(),
        "the manifest in {} lists no stream",
        dir.display()
    );
    let mut checked = Vec::new();
    for entry in &manifest.streams {
        let file = dir.join(&entry.file);
        let (bytes, sha256) = hash_file(&file).with_context(|| {
            format!(
                "stream {}: the snapshot file {} cannot be read",
                entry.name,
                file.display()
            )
        })?;
        if bytes != entry.bytes {
            bail!(
                "stream {}: the snapshot file {} has {bytes} bytes; the manifest says {}",
                entry.name,
                file.display(),
                entry.bytes
            );
        }
        if sha256 != entry.sha256 {
            bail!(
                "stream {}: the snapshot file {} does not match its checksum (SHA-256 {sha256}; the manifest says {})",
                entry.name,
                file.display(),
                entry.sha256
            );
        }
        checked.push(Checked {
            stream: entry.name.clone(),
            file,
            bytes,
        });
    }
    Ok((manifest, checked))
}

/// Size and SHA-256 (hex) of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && Path::new(name).components().count() == 1
}

pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Make a rename durable (best effort: not every platform can sync a directory).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_file_names_are_allowed() {
        assert!(is_plain_file_name("CAREWOVEN.snapshot"));
        for bad in ["", ".", "..", "../x", "/etc/passwd", "a/b", "a\\b"] {
            assert!(!is_plain_file_name(bad), "{bad:?}");
        }
    }
}
