//! The short version of `just faults` (the default test run): every scenario once, small,
//! with the services run from this package's `faults serve <kind>` (the same libraries and
//! flags as the release binaries, which the default run does not build). One scenario at a
//! time: on 2 cores, two clusters at once would time each other out.

#![allow(clippy::unwrap_used)]

use carewoven_bench::faults::{self, Options, disk::Mode, procs::Binaries};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options() -> Options {
    Options::short(Binaries::SelfHosted(env!("CARGO_BIN_EXE_faults").into()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_loses_and_duplicates_nothing_through_kills_and_a_pause() {
    let _one = SERIAL.lock().await;
    let r = faults::cluster::run(&options()).await.unwrap();
    println!("{}\n{}", r.line(), r.detail());
    assert_eq!(r.converged.log.lost, 0, "{}", r.detail());
    assert_eq!(r.converged.log.duplicated, 0, "{}", r.detail());
    assert!(r.converged.log.acked > 0);
    assert!(r.converged.ok(), "{}", r.detail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_crash_loses_nothing_acknowledged() {
    let _one = SERIAL.lock().await;
    let r = faults::broker::run(&options()).await.unwrap();
    println!("{}\n{}", r.line(), r.detail());
    assert_eq!(r.converged.log.lost, 0, "{}", r.detail());
    assert!(r.converged.ok(), "{}", r.detail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_crashes_leave_views_and_feeds_exact() {
    let _one = SERIAL.lock().await;
    let r = faults::services::run(&options()).await.unwrap();
    println!("{}\n{}", r.line(), r.detail());
    assert_eq!(r.rounds, 3);
    assert_eq!(r.mismatches, 0, "{}", r.detail());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_refused_clearly_and_recovered_from() {
    let _one = SERIAL.lock().await;
    let r = faults::disk::run(&options(), Mode::Auto).await.unwrap();
    println!("{}\n{}", r.line(), r.detail());
    assert!(r.refusal_clear(), "{}", r.detail());
    assert_eq!(r.converged.log.lost, 0, "{}", r.detail());
    assert!(r.converged.ok(), "{}", r.detail());
}
