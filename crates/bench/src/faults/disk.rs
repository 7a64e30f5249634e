//! A full disk. As root, the NATS store is on a small ext4 filesystem on a loopback device,
//! filled to the last block by a ballast file under load; otherwise (or with `--disk limit`)
//! JetStream's own `max_file_store` is set small enough for the load to reach it. Either
//! way: a command refused meanwhile is refused clearly (UNAVAILABLE or RESOURCE_EXHAUSTED,
//! with a message), nothing acknowledged is lost, and once space returns (the ballast is
//! removed; the limit is raised and the server restarted) the services serve again and the
//! views and feeds converge.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};

use uuid::Uuid;

use super::broker::single_node;
use super::load::LOAD_ORG;
use super::procs::Keys;
use super::{Converged, Options, World};

/// How long appends may take to resume by themselves once space returns.
const SELF_RECOVERY: Duration = Duration::from_secs(10);

/// How the disk fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A loopback ext4 filesystem filled by a ballast file (needs root).
    Loopback,
    /// JetStream's `max_file_store` reached.
    Limit,
    /// `Loopback` when root and the mount works, else `Limit`.
    Auto,
}

pub struct Report {
    pub mode: Mode,
    /// The first refusal's code and message.
    pub refused: (String, String),
    /// Refusals while full, by code.
    pub refusals: String,
    pub recovered_s: f64,
    /// The broker had to be restarted after space returned (nats-server keeps refusing
    /// writes to a stream once a write to it failed for want of space).
    pub broker_restarted: bool,
    pub converged: Converged,
    pub unexpected: Vec<String>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "faults-disk: mode={} acked={} lost={} refused={} broker_restart={} recovered_s={:.1}",
            match self.mode {
                Mode::Loopback => "loopback",
                _ => "max_file_store",
            },
            self.converged.log.acked,
            self.converged.log.lost,
            self.refused.0,
            if self.broker_restarted {
                "needed"
            } else {
                "no"
            },
            self.recovered_s
        )
    }

    pub fn detail(&self) -> String {
        format!(
            "  first refusal: {} \"{}\"\n  load refusals (retried with the same id): {}{}\n{}",
            self.refused.0,
            self.refused.1,
            self.refusals,
            if self.unexpected.is_empty() {
                String::new()
            } else {
                format!(" UNEXPECTED: {:?}", self.unexpected)
            },
            self.converged.detail()
        )
    }

    /// The refusal is one a client can act on: UNAVAILABLE or RESOURCE_EXHAUSTED, with a
    /// message.
    pub fn refusal_clear(&self) -> bool {
        matches!(self.refused.0.as_str(), "Unavailable" | "ResourceExhausted")
            && !self.refused.1.is_empty()
    }
}

/// A mounted loopback filesystem, unmounted on drop.
struct Loop {
    mount: PathBuf,
    /// Holds the image and the mount point (outside the run's directory, which is removed
    /// before this is unmounted).
    _dir: tempfile::TempDir,
}

impl Loop {
    fn mount(parent: &Path, mib: u64) -> Result<Loop> {
        let dir = tempfile::Builder::new()
            .prefix("carewoven-faults-disk-")
            .tempdir_in(parent)?;
        let image = dir.path().join("disk.img");
        let mount = dir.path().join("disk");
        std::fs::create_dir_all(&mount)?;
        std::fs::File::create(&image)?.set_len(mib * 1024 * 1024)?;
        let run = |program: &str, args: &[&std::ffi::OsStr]| -> Result<()> {
            let out = std::process::Command::new(program).args(args).output()?;
            ensure!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        };
        // No blocks reserved for root: the server runs as root here.
        run(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-F".as_ref(),
                "-m".as_ref(),
                "0".as_ref(),
                image.as_os_str(),
            ],
        )?;
        run(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                image.as_os_str(),
                mount.as_os_str(),
            ],
        )?;
        Ok(Loop { mount, _dir: dir })
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .status();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Fill the filesystem holding `dir` with a ballast file; its path.
fn fill(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("ballast");
    let mut file = std::fs::File::create(&path)?;
    let chunk = vec![0xA5u8; 1024 * 1024];
    loop {
        if let Err(e) = file.write_all(&chunk) {
            ensure!(
                e.raw_os_error() == Some(28),
                "filling the disk: {e} (expected ENOSPC)"
            );
            break;
        }
    }
    // The last partial blocks too.
    let small = vec![0xA5u8; 4096];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
    Ok(path)
}

/// The shipped single-node configuration with `max_file_store: <bytes>` in its JetStream
/// block, written beside a copy of the accounts file.
fn limited_config(root: &Path, bytes: u64) -> Result<PathBuf> {
    let deploy = carewoven_testkit::repo_root().join("deploy");
    let shipped = std::fs::read_to_string(deploy.join("nats-server.conf"))?;
    let limited = shipped.replacen(
        "  sync_interval: always\n",
        &format!("  sync_interval: always\n  max_file_store: {bytes}\n"),
        1,
    );
    ensure!(
        limited != shipped,
        "deploy/nats-server.conf no longer sets sync_interval: always"
    );
    std::fs::copy(deploy.join("accounts.conf"), root.join("accounts.conf"))?;
    let path = root.join(format!("nats-{bytes}.conf"));
    std::fs::write(&path, limited)?;
    Ok(path)
}

/// One probe command (a new id): Ok(id) if acknowledged, Err(status) if refused.
async fn probe(
    client: &mut CommandServiceClient<tonic::transport::Channel>,
    person: &str,
) -> std::result::Result<Uuid, tonic::Status> {
    let context = carewoven_testkit::ctx(LOAD_ORG);
    let id = context
        .as_ref()
        .and_then(|c| Uuid::parse_str(&c.command_id).ok())
        .unwrap_or_default();
    let mut request = carewoven_testkit::signed(v1::RecordFeedbackRequest {
        context,
        person_id: person.to_owned(),
        feedback: Some(v1::FeedbackRecord {
            source: v1::FeedbackSource::Person as i32,
            anonymous: false,
            text: "Probe while the disk is full".into(),
            rating: 3,
        }),
    });
    request.set_timeout(Duration::from_secs(15));
    client.record_feedback(request).await.map(|_| id)
}

pub async fn run(options: &Options, mode: Mode) -> Result<Report> {
    let root = World::root(options, "disk")?;
    let keys = Keys::new(root.path())?;
    // 64 MiB of filesystem; with the limit, 4 MiB of JetStream store (a few thousand
    // events with the audit and feeds beside them). `Auto` falls back to the limit when
    // this is not root or the loopback mount fails (no loop devices in a container).
    let disk = match mode {
        Mode::Loopback => {
            Some(Loop::mount(&options.dir, 64).context("mounting a loopback filesystem")?)
        }
        Mode::Auto if is_root() => match Loop::mount(&options.dir, 64) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("  no loopback filesystem ({e:#}); using max_file_store instead");
                None
            }
        },
        _ => None,
    };
    let (mode, mut node) = match &disk {
        Some(d) => (
            Mode::Loopback,
            single_node(root.path(), &keys, d.mount.join("jetstream"))?,
        ),
        None => {
            let mut node = single_node(root.path(), &keys, root.path().join("nats"))?;
            node.set_config(limited_config(root.path(), 4 * 1024 * 1024)?);
            (Mode::Limit, node)
        }
    };
    node.start()?;
    let mut world = World::start(options, root, keys, vec![node], 1).await?;
    let timeout = options.timeout;
    let load = world.load()?;
    load.progress(options.phase_acks, timeout).await?;

    // A person for the probes, registered while there is space.
    let commands = world.commands[0].as_ref().context("commands")?;
    let mut client = CommandServiceClient::new(commands.channel().await?);
    let person = client
        .register_person(carewoven_testkit::signed(v1::RegisterPersonRequest {
            context: carewoven_testkit::ctx(LOAD_ORG),
            profile: Some(v1::Profile {
                nhs_number: carewoven_testkit::test_nhs_number(99_999),
                given_name: "Synthetic".into(),
                family_name: "Probe".into(),
                date_of_birth: "1950-01-01".into(),
                registered_gp: LOAD_ORG.into(),
                ..Default::default()
            }),
        }))
        .await
        .context("registering the probe person")?
        .into_inner()
        .person_id;
    let mut probes_acked = HashSet::new();

    // Fill up.
    let ballast = match &disk {
        Some(d) => Some(fill(&d.mount)?),
        None => None,
    };
    // The first refusal a probe gets (the load keeps going meanwhile; with the limit, the
    // load's own appends fill the store).
    let deadline = Instant::now() + timeout;
    let refused = loop {
        match probe(&mut client, &person).await {
            Ok(id) => {
                probes_acked.insert(id);
            }
            Err(s) => break (format!("{:?}", s.code()), s.message().to_owned()),
        }
        ensure!(
            Instant::now() < deadline,
            "no command was refused within {timeout:?} of the disk filling up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Full for a while under load: a couple of seconds more of refusals.
    let full_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < full_until {
        if let Ok(id) = probe(&mut client, &person).await {
            probes_acked.insert(id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Space returns.
    let t = Instant::now();
    let broker_restarted = match ballast {
        Some(path) => {
            std::fs::remove_file(path)?;
            // nats-server 2.15 keeps a stream's write error once it had one: appends stay
            // refused until the server is restarted. Give it a few seconds to recover by
            // itself, then restart it gracefully, as an operator would.
            match load.progress(1, SELF_RECOVERY).await {
                Ok(()) => false,
                Err(_) => {
                    world.nodes[0].stop()?;
                    world.nodes[0].start()?;
                    true
                }
            }
        }
        None => {
            world.nodes[0].stop()?;
            let bigger = limited_config(&world.spawner.root, 1024 * 1024 * 1024)?;
            world.nodes[0].set_config(bigger);
            world.nodes[0].start()?;
            true
        }
    };
    load.progress(options.phase_acks, timeout)
        .await
        .context("the load did not recover when space returned")?;
    let recovered_s = t.elapsed().as_secs_f64();
    match probe(&mut client, &person).await {
        Ok(id) => {
            probes_acked.insert(id);
        }
        Err(s) => bail!("a command after space returned was refused: {s:?}"),
    }
    let tally = load.finish(timeout).await;
    let mut acked = tally.acked.clone();
    acked.extend(probes_acked);
    let converged = world
        .converge(&acked, tally.unexpected_count, false)
        .await?;
    world.finish().await?;
    drop(disk);
    Ok(Report {
        mode,
        refused,
        refusals: tally.refusals(),
        recovered_s,
        broker_restarted,
        converged,
        unexpected: tally.unexpected,
    })
}
