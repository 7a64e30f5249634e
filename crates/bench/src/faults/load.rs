//! A steady command load: workers sending commands with known command ids to one of several
//! command-service instances. A command refused as retryable (UNAVAILABLE, ABORTED, a
//! deadline, RESOURCE_EXHAUSTED, or a transport error while an instance is down) is sent
//! again with the same command id, to another instance, until it is acknowledged; any other
//! refusal is recorded as unexpected. Acknowledged ids are kept for the check against the
//! log.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use carewoven_testkit::{ctx, signed, test_nhs_number};
use tokio::sync::{Mutex, RwLock};
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

/// The organisation every load command acts for: the people's registered practice.
pub const LOAD_ORG: &str = "GP-A";
/// A gap between acknowledgements longer than this counts as unavailability.
const GAP: Duration = Duration::from_secs(1);
/// How long the client waits for one attempt (longer than the services' NATS timeout, so the
/// service answers first).
const ATTEMPT: Duration = Duration::from_secs(15);
/// Synthetic NHS numbers are distinct for n below this.
const MAX_PEOPLE: u32 = 100_000;
/// Feedback commands per person before a worker registers the next one.
const PER_PERSON: u32 = 10;

/// What the load saw.
#[derive(Default)]
pub struct Tally {
    /// Every acknowledged command id.
    pub acked: HashSet<Uuid>,
    /// Acknowledged after at least one retryable refusal.
    pub acked_after_retry: u64,
    /// Retryable refusals by code (`transport` for connection errors).
    pub refused: BTreeMap<String, u64>,
    /// Refusals that are not retryable: code and message (the first few) and count.
    pub unexpected: Vec<String>,
    pub unexpected_count: u64,
    /// Commands given up when the load stopped before they were acknowledged.
    pub abandoned: u64,
    /// Acknowledgement times (and pause boundaries), for the unavailability figure.
    marks: Vec<(Instant, bool)>,
}

impl Tally {
    /// Seconds in gaps of more than a second between acknowledgements while the load ran
    /// (pauses excluded).
    pub fn unavailable_secs(&self) -> f64 {
        let mut marks = self.marks.clone();
        marks.sort_by_key(|(t, _)| *t);
        let mut total = 0.0;
        for w in marks.windows(2) {
            let ((a, paused), (b, _)) = (w[0], w[1]);
            let gap = b - a;
            if !paused && gap > GAP {
                total += gap.as_secs_f64();
            }
        }
        total
    }

    /// `code=count` for each retryable refusal seen.
    pub fn refusals(&self) -> String {
        if self.refused.is_empty() {
            return "none".to_owned();
        }
        self.refused
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

struct Shared {
    stop: AtomicBool,
    /// Stop retrying after this instant (set by `finish`).
    give_up: Mutex<Option<Instant>>,
    tally: Mutex<Tally>,
    acked: AtomicU64,
}

/// The running load.
pub struct Load {
    shared: Arc<Shared>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    pause: Option<tokio::sync::OwnedRwLockWriteGuard<()>>,
    /// Workers hold it for reading while a command is in flight; a pause takes it for
    /// writing (waiting for those in flight).
    gate: Arc<RwLock<()>>,
}

impl Load {
    /// Start `workers` workers against the command services at `addrs` (worker i starts
    /// with instance i mod n and moves to the next one on every retryable refusal).
    pub fn start(addrs: &[String], workers: usize) -> Result<Self> {
        let channels: Vec<Channel> = addrs
            .iter()
            .map(|a| {
                Ok(Channel::from_shared(format!("http://{a}"))?
                    .connect_timeout(Duration::from_secs(2))
                    .connect_lazy())
            })
            .collect::<Result<_>>()?;
        let gate = Arc::new(RwLock::new(()));
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            give_up: Mutex::new(None),
            tally: Mutex::new(Tally::default()),
            acked: AtomicU64::new(0),
        });
        let workers = (0..workers)
            .map(|w| {
                let clients: Vec<_> = channels
                    .iter()
                    .map(|c| CommandServiceClient::new(c.clone()))
                    .collect();
                tokio::spawn(worker(
                    w as u32,
                    workers as u32,
                    clients,
                    shared.clone(),
                    gate.clone(),
                ))
            })
            .collect();
        Ok(Load {
            shared,
            workers,
            pause: None,
            gate,
        })
    }

    /// Commands acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.shared.acked.load(Ordering::Relaxed)
    }

    /// The ids acknowledged so far.
    pub async fn acked_ids(&self) -> HashSet<Uuid> {
        self.shared.tally.lock().await.acked.clone()
    }

    /// Refusals so far that were neither retryable nor acknowledged.
    pub async fn unexpected(&self) -> u64 {
        self.shared.tally.lock().await.unexpected_count
    }

    /// Retryable refusals so far (all codes).
    pub async fn refused(&self) -> u64 {
        self.shared.tally.lock().await.refused.values().sum()
    }

    /// Wait until `n` more commands are acknowledged (at most `timeout`).
    pub async fn progress(&self, n: u64, timeout: Duration) -> Result<()> {
        let target = self.acked() + n;
        let deadline = Instant::now() + timeout;
        while self.acked() < target {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the load made no progress: {} of {n} more commands acknowledged within {timeout:?} ({})",
                n - (target - self.acked()),
                self.shared.tally.lock().await.refusals()
            );
            tokio::time::sleep(super::procs::POLL).await;
        }
        Ok(())
    }

    /// Stop sending new commands once those in flight are acknowledged (the log is then
    /// still until `resume`).
    pub async fn pause(&mut self) {
        if self.pause.is_none() {
            let guard = self.gate.clone().write_owned().await;
            self.shared
                .tally
                .lock()
                .await
                .marks
                .push((Instant::now(), true));
            self.pause = Some(guard);
        }
    }

    pub async fn resume(&mut self) {
        if let Some(guard) = self.pause.take() {
            self.shared
                .tally
                .lock()
                .await
                .marks
                .push((Instant::now(), false));
            drop(guard);
        }
    }

    /// Stop the workers: those in flight keep retrying for at most `grace`, then give up.
    pub async fn finish(mut self, grace: Duration) -> Tally {
        self.resume().await;
        *self.shared.give_up.lock().await = Some(Instant::now() + grace);
        self.shared.stop.store(true, Ordering::SeqCst);
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        std::mem::take(&mut *self.shared.tally.lock().await)
    }
}

enum Cmd {
    Register(v1::RegisterPersonRequest),
    Feedback(v1::RecordFeedbackRequest),
}

fn command_id(cmd: &Cmd) -> Uuid {
    let c = match cmd {
        Cmd::Register(r) => r.context.as_ref(),
        Cmd::Feedback(r) => r.context.as_ref(),
    };
    c.and_then(|c| Uuid::parse_str(&c.command_id).ok())
        .unwrap_or_default()
}

fn register(n: u32) -> Cmd {
    Cmd::Register(v1::RegisterPersonRequest {
        context: ctx(LOAD_ORG),
        profile: Some(v1::Profile {
            nhs_number: test_nhs_number(n),
            given_name: "Synthetic".into(),
            family_name: format!("Person{n}"),
            date_of_birth: "1941-03-02".into(),
            registered_gp: LOAD_ORG.into(),
            ..Default::default()
        }),
    })
}

fn feedback(person: &str, k: u32) -> Cmd {
    Cmd::Feedback(v1::RecordFeedbackRequest {
        context: ctx(LOAD_ORG),
        person_id: person.into(),
        feedback: Some(v1::FeedbackRecord {
            source: v1::FeedbackSource::Person as i32,
            anonymous: false,
            text: format!("Synthetic feedback {k}"),
            rating: k % 5 + 1,
        }),
    })
}

/// Whether a refusal is one a client retries with the same command id, and its name.
fn retryable(status: &tonic::Status) -> Option<&'static str> {
    match status.code() {
        Code::Unavailable => Some("unavailable"),
        Code::Aborted => Some("aborted"),
        Code::DeadlineExceeded => Some("deadline_exceeded"),
        Code::ResourceExhausted => Some("resource_exhausted"),
        // A connection cut while an instance died (tonic has no code of its own for it).
        Code::Unknown | Code::Cancelled | Code::Internal
            if status.message().contains("transport")
                || status.message().contains("connection")
                || status.message().contains("h2 protocol")
                || status.message().contains("broken pipe") =>
        {
            Some("transport")
        }
        _ => None,
    }
}

async fn worker(
    w: u32,
    workers: u32,
    mut clients: Vec<CommandServiceClient<Channel>>,
    shared: Arc<Shared>,
    gate: Arc<RwLock<()>>,
) {
    let mut target = w as usize;
    let mut person: Option<String> = None;
    let mut people = 0u32;
    let mut k = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        let _in_flight = gate.read().await;
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let n = w + workers * people;
        let cmd = match &person {
            Some(p) if !k.is_multiple_of(PER_PERSON) || n >= MAX_PEOPLE => feedback(p, k),
            _ => register(n),
        };
        let id = command_id(&cmd);
        let mut attempts = 0u32;
        loop {
            let i = target % clients.len();
            let client = &mut clients[i];
            let outcome = match &cmd {
                Cmd::Register(r) => {
                    let mut request = signed(r.clone());
                    request.set_timeout(ATTEMPT);
                    client
                        .register_person(request)
                        .await
                        .map(|r| Some(r.into_inner().person_id))
                }
                Cmd::Feedback(r) => {
                    let mut request = signed(r.clone());
                    request.set_timeout(ATTEMPT);
                    client.record_feedback(request).await.map(|_| None)
                }
            };
            match outcome {
                Ok(registered) => {
                    if let Some(p) = registered {
                        person = Some(p);
                        people += 1;
                    }
                    let mut tally = shared.tally.lock().await;
                    tally.acked.insert(id);
                    tally.marks.push((Instant::now(), false));
                    if attempts > 0 {
                        tally.acked_after_retry += 1;
                    }
                    shared.acked.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(status) => match retryable(&status) {
                    Some(code) => {
                        *shared
                            .tally
                            .lock()
                            .await
                            .refused
                            .entry(code.to_owned())
                            .or_default() += 1;
                        attempts += 1;
                        target += 1;
                        let give_up = *shared.give_up.lock().await;
                        if give_up.is_some_and(|g| Instant::now() > g) {
                            shared.tally.lock().await.abandoned += 1;
                            break;
                        }
                        // Back off before trying again (a client's retry policy, not a wait
                        // for a condition): 20 ms doubling to 640 ms.
                        let backoff = Duration::from_millis(20 << attempts.min(5));
                        tokio::time::sleep(backoff).await;
                    }
                    None => {
                        let mut tally = shared.tally.lock().await;
                        tally.unexpected_count += 1;
                        if tally.unexpected.len() < 5 {
                            tally.unexpected.push(format!(
                                "{:?}: {}",
                                status.code(),
                                status.message()
                            ));
                        }
                        break;
                    }
                },
            }
        }
        k += 1;
    }
}
