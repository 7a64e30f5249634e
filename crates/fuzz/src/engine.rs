//! The run: inputs of one target at a time on every worker thread, each under
//! `catch_unwind`, timed by a watchdog thread and measured by the counting allocator.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, Once, mpsc};
use std::time::{Duration, Instant};

use crate::alloc;
use crate::rng::Rng;

/// What a target made of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Decoded and accepted.
    Accepted,
    /// Refused with a clear error (the right code, naming the field where there is one).
    Refused,
    /// Refused, but not clearly: what was wrong with the answer.
    Unclear(String),
}

/// One decoder or parser reachable from outside, and how to make inputs for it.
pub trait Target: Sync {
    fn name(&self) -> &'static str;
    /// Input `rng` stands for: arbitrary bytes or a structure-aware one, often mutated.
    fn generate(&self, rng: &mut Rng, out: &mut Vec<u8>);
    /// Feed one input to the code the services run.
    fn run(&self, input: &[u8]) -> Verdict;
}

#[derive(Debug, Clone)]
pub struct Options {
    pub seed: u64,
    pub inputs: u64,
    pub threads: usize,
    /// An input running longer is a hang.
    pub hang_after: Duration,
    /// An input whose decoding has more than this live at once is over the bound.
    pub alloc_bound: usize,
    /// Where failing inputs are written (hex), if anywhere.
    pub findings: Option<PathBuf>,
    /// Print each failing input as it is found.
    pub verbose: bool,
}

/// One failing input.
#[derive(Debug, Clone)]
pub struct Finding {
    pub kind: &'static str,
    pub index: u64,
    pub detail: String,
    pub input: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub target: &'static str,
    pub inputs: u64,
    pub accepted: u64,
    pub refused: u64,
    pub panics: u64,
    pub hangs: u64,
    pub over_alloc: u64,
    pub unclear: u64,
    /// The most any one input had allocated at once, and its size.
    pub max_peak: usize,
    pub max_peak_input_len: usize,
    pub largest_input: usize,
    pub slowest: Duration,
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
}

impl Report {
    /// `fuzz: inputs=<n> panics=<n> hangs=<n> over_alloc=<n> unclear=<n>`.
    pub fn line(&self) -> String {
        format!(
            "fuzz: inputs={} panics={} hangs={} over_alloc={} unclear={}",
            self.inputs, self.panics, self.hangs, self.over_alloc, self.unclear
        )
    }

    pub fn add(&mut self, other: &Report) {
        self.inputs += other.inputs;
        self.accepted += other.accepted;
        self.refused += other.refused;
        self.panics += other.panics;
        self.hangs += other.hangs;
        self.over_alloc += other.over_alloc;
        self.unclear += other.unclear;
        if other.max_peak > self.max_peak {
            self.max_peak = other.max_peak;
            self.max_peak_input_len = other.max_peak_input_len;
        }
        self.largest_input = self.largest_input.max(other.largest_input);
        self.slowest = self.slowest.max(other.slowest);
        self.elapsed += other.elapsed;
        self.findings.extend(other.findings.iter().cloned());
    }
}

thread_local! {
    static IN_INPUT: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A panic inside an input is recorded, not printed; any other goes to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_INPUT.with(Cell::get) {
                let at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = format!("{message}{at}"));
            } else {
                previous(info);
            }
        }));
    });
}

/// One input through a target, as the engine runs it: the verdict (or the panic's
/// message) and the most bytes it had live at once.
pub fn run_one(target: &dyn Target, input: &[u8]) -> (Result<Verdict, String>, usize) {
    install_panic_hook();
    IN_INPUT.with(|f| f.set(true));
    let base = alloc::start();
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let peak = alloc::peak_since(base);
    IN_INPUT.with(|f| f.set(false));
    (
        result.map_err(|_| LAST_PANIC.with(|p| std::mem::take(&mut *p.borrow_mut()))),
        peak,
    )
}

/// The input `index` of `target` in a run seeded `seed`.
pub fn input(target: &dyn Target, seed: u64, index: u64) -> Vec<u8> {
    let mut rng = Rng::for_input(seed, target.name(), index);
    let mut out = Vec::new();
    target.generate(&mut rng, &mut out);
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let t: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !t.len().is_multiple_of(2) {
        return None;
    }
    t.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}

/// A worker's input in progress, for the watchdog.
struct Slot {
    /// Nanoseconds since the run started, plus one; 0 when idle.
    started: AtomicU64,
    index: AtomicU64,
    /// The index (plus one) already reported as a hang.
    reported: AtomicU64,
}

const CHUNK: u64 = 64;

/// Run `opts.inputs` inputs of `target`.
pub fn run_target(target: &dyn Target, opts: &Options) -> Report {
    install_panic_hook();
    let t0 = Instant::now();
    let next = AtomicU64::new(0);
    let slots: Vec<Slot> = (0..opts.threads)
        .map(|_| Slot {
            started: AtomicU64::new(0),
            index: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        })
        .collect();
    let report = Mutex::new(Report {
        target: target.name(),
        ..Report::default()
    });
    let hangs = AtomicUsize::new(0);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let slots = &slots;
    let hangs = &hangs;
    let record = |finding: Finding| {
        if opts.verbose {
            let shown = &finding.input[..finding.input.len().min(256)];
            eprintln!(
                "fuzz: {} {} input #{} ({} bytes): {}\n  hex: {}{}",
                target.name(),
                finding.kind,
                finding.index,
                finding.input.len(),
                finding.detail,
                hex(shown),
                if finding.input.len() > 256 { "…" } else { "" }
            );
        }
        if let Some(dir) = &opts.findings {
            let _ = std::fs::create_dir_all(dir);
            let file = dir.join(format!(
                "{}-{}-seed{}-{}.hex",
                target.name(),
                finding.kind,
                opts.seed,
                finding.index
            ));
            if std::fs::write(&file, hex(&finding.input)).is_ok() && opts.verbose {
                eprintln!("  saved to {}", file.display());
            }
        }
        let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
        if r.findings.len() < 100 {
            r.findings.push(finding);
        }
    };
    std::thread::scope(|scope| {
        // The watchdog: an input running past `hang_after` is counted (once) and saved; one
        // running a minute is a hang that would stop the run, so the run ends there.
        let watchdog = scope.spawn(move || {
            loop {
                match done_rx.recv_timeout(Duration::from_millis(50)) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let now = t0.elapsed().as_nanos() as u64 + 1;
                for slot in slots {
                    let started = slot.started.load(Ordering::Acquire);
                    if started == 0 {
                        continue;
                    }
                    let index = slot.index.load(Ordering::Acquire);
                    let running = Duration::from_nanos(now.saturating_sub(started));
                    if running > opts.hang_after
                        && slot.reported.swap(index + 1, Ordering::AcqRel) != index + 1
                    {
                        hangs.fetch_add(1, Ordering::Relaxed);
                        record(Finding {
                            kind: "hang",
                            index,
                            detail: format!("still running after {running:?}"),
                            input: input(target, opts.seed, index),
                        });
                    }
                    if running > Duration::from_secs(60) {
                        eprintln!(
                            "fuzz: {} input #{index} has run for {running:?}: stopping the run",
                            target.name()
                        );
                        std::process::exit(2);
                    }
                }
            }
        });
        let workers: Vec<_> = slots
            .iter()
            .map(|slot| {
                let next = &next;
                let report = &report;
                let record = &record;
                scope.spawn(move || {
                    let mut local = Report::default();
                    let mut buf = Vec::new();
                    loop {
                        let from = next.fetch_add(CHUNK, Ordering::Relaxed);
                        if from >= opts.inputs {
                            break;
                        }
                        for index in from..(from + CHUNK).min(opts.inputs) {
                            buf.clear();
                            let mut rng = Rng::for_input(opts.seed, target.name(), index);
                            target.generate(&mut rng, &mut buf);
                            slot.index.store(index, Ordering::Release);
                            let started = Instant::now();
                            slot.started
                                .store(t0.elapsed().as_nanos() as u64 + 1, Ordering::Release);
                            let (result, peak) = run_one(target, &buf);
                            slot.started.store(0, Ordering::Release);
                            let took = started.elapsed();
                            local.inputs += 1;
                            local.slowest = local.slowest.max(took);
                            local.largest_input = local.largest_input.max(buf.len());
                            if peak > local.max_peak {
                                local.max_peak = peak;
                                local.max_peak_input_len = buf.len();
                            }
                            if peak > opts.alloc_bound {
                                local.over_alloc += 1;
                                record(Finding {
                                    kind: "over-alloc",
                                    index,
                                    detail: format!("{peak} bytes live at once"),
                                    input: buf.clone(),
                                });
                            }
                            match result {
                                Ok(Verdict::Accepted) => local.accepted += 1,
                                Ok(Verdict::Refused) => local.refused += 1,
                                Ok(Verdict::Unclear(why)) => {
                                    local.unclear += 1;
                                    record(Finding {
                                        kind: "unclear",
                                        index,
                                        detail: why,
                                        input: buf.clone(),
                                    });
                                }
                                Err(message) => {
                                    local.panics += 1;
                                    record(Finding {
                                        kind: "panic",
                                        index,
                                        detail: message,
                                        input: buf.clone(),
                                    });
                                }
                            }
                        }
                    }
                    let mut r = report.lock().unwrap_or_else(|e| e.into_inner());
                    let findings = std::mem::take(&mut r.findings);
                    r.add(&local);
                    r.findings = findings;
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        let _ = done_tx.send(());
        let _ = watchdog.join();
    });
    let mut r = report.into_inner().unwrap_or_else(|e| e.into_inner());
    r.hangs = hangs.load(Ordering::Relaxed) as u64;
    r.elapsed = t0.elapsed();
    r
}
