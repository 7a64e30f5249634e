//! The short version of `just fuzz` in the default test run: the same targets and engine,
//! 20,000 inputs in all (a fixed seed, so a failure here is made again by
//! `carewoven-fuzz --seed 20261204 --inputs 20000`), and every one must neither panic,
//! hang, go over the allocation bound nor be refused unclearly.

use std::time::Duration;

use carewoven_fuzz::engine::hex;
use carewoven_fuzz::{ALLOC_BOUND, Options, Report, targets};

const SEED: u64 = 20_261_204;
const INPUTS: u64 = 20_000;

#[test]
fn twenty_thousand_hostile_inputs_break_nothing() {
    let all = targets::all();
    let options = Options {
        seed: SEED,
        inputs: INPUTS.div_ceil(all.len() as u64),
        threads: 2,
        // A debug build is slower than the release one `just fuzz` runs; still, a second
        // per input is far beyond any decoder's honest work.
        hang_after: Duration::from_secs(5),
        alloc_bound: ALLOC_BOUND,
        findings: None,
        verbose: true,
    };
    let mut total = Report::default();
    for target in &all {
        let r = carewoven_fuzz::run_target(target.as_ref(), &options);
        println!(
            "{:<12} {} accepted={} refused={}",
            r.target,
            r.line(),
            r.accepted,
            r.refused
        );
        // Every target reaches past its decoder for some inputs and is refused for others:
        // a generator that only ever makes garbage (or only valid input) tests little.
        assert!(r.refused > 0, "{}: nothing was refused", r.target);
        total.add(&r);
    }
    println!("{}", total.line());
    for f in &total.findings {
        println!(
            "{} #{} ({} bytes): {}\n  {}",
            f.kind,
            f.index,
            f.input.len(),
            f.detail,
            hex(&f.input[..f.input.len().min(512)])
        );
    }
    assert!(total.inputs >= INPUTS);
    assert_eq!(
        (total.panics, total.hangs, total.over_alloc, total.unclear),
        (0, 0, 0, 0),
        "{}",
        total.line()
    );
}

/// Each target accepts its own valid input somewhere in the short run, so the structure-aware
/// generators really reach the code behind the decoders.
#[test]
fn structure_aware_inputs_get_through() {
    let options = Options {
        seed: SEED,
        inputs: 400,
        threads: 1,
        hang_after: Duration::from_secs(5),
        alloc_bound: ALLOC_BOUND,
        findings: None,
        verbose: false,
    };
    for target in targets::all() {
        let r = carewoven_fuzz::run_target(target.as_ref(), &options);
        assert!(
            r.accepted > 0,
            "{}: no input was accepted in {}",
            r.target,
            r.inputs
        );
    }
}
