//! carectl: send every Carewoven command from the terminal.
//!
//! Exit codes: 0 accepted; 2 refused (INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
//! FAILED_PRECONDITION; also bad command-line usage); 3 retryable (ABORTED, UNAVAILABLE,
//! cannot connect, not ready); 1 anything else.

mod cli;
mod demo;
mod enums;
mod health;
mod output;
mod parse;
mod requests;
mod rpc;
mod seed;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use serde_json::json;
use uuid::Uuid;

use crate::cli::{Cli, Command};
use crate::rpc::Ctx;

/// Exit code when the server cannot be reached or is not ready.
const UNREACHABLE: u8 = 3;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let Cli { global: g, command } = Cli::parse();
    let timeout = Duration::from_secs(g.timeout_secs);

    match command {
        Command::WaitReady => match health::wait_ready(&g.server, timeout).await {
            Ok(ready) => {
                if g.json {
                    println!(
                        "{}",
                        json!({"ready": true, "server": g.server, "service": ready.service,
                               "waited_ms": ready.waited.as_millis(), "attempts": ready.attempts})
                    );
                } else {
                    println!(
                        "ready: {} is SERVING at {} (after {:.1}s, {} attempt(s))",
                        ready.service,
                        g.server,
                        ready.waited.as_secs_f64(),
                        ready.attempts
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                output::report_error(&e, g.json);
                ExitCode::from(UNREACHABLE)
            }
        },
        Command::Demo(d) => {
            if let Some(n) = &d.nhs_number
                && let Err(e) = demo::check_nhs_number(n)
            {
                output::report_error(&e, g.json);
                return ExitCode::from(2);
            }
            let mut client = match rpc::connect(&g.server, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    output::report_error(&e, g.json);
                    return ExitCode::from(UNREACHABLE);
                }
            };
            let day = d.day.unwrap_or_else(parse::today);
            demo::run(&mut client, &g.server, timeout, g.json, day, d.nhs_number).await
        }
        Command::Seed(s) => {
            let anchor = s.anchor_day.unwrap_or_else(parse::today);
            if anchor > parse::today() {
                output::report_error(
                    &anyhow::anyhow!("--anchor-day cannot be in the future"),
                    g.json,
                );
                return ExitCode::from(2);
            }
            let client = match rpc::connect(&g.server, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    output::report_error(&e, g.json);
                    return ExitCode::from(UNREACHABLE);
                }
            };
            let options = seed::Options {
                people: s.people,
                seed: s.seed,
                days: s.days,
                concurrency: usize::try_from(s.concurrency).unwrap_or(16),
                anchor,
                json: g.json,
                timeout,
            };
            seed::run(client, options).await
        }
        command => {
            let command_id = g.command_id.unwrap_or_else(Uuid::now_v7);
            let ctx = Ctx {
                command_id,
                correlation_id: g.correlation_id,
                causation_id: g.causation_id,
                organisation: g.org.clone(),
                user: g.user.clone(),
                occurred_at: g.occurred_at.map(parse::timestamp),
            };
            let request = match requests::build(command, &ctx) {
                Ok(r) => r,
                Err(e) => {
                    output::report_error(&e, g.json);
                    return ExitCode::FAILURE;
                }
            };
            let mut client = match rpc::connect(&g.server, timeout).await {
                Ok(c) => c,
                Err(e) => {
                    output::report_error(&e, g.json);
                    if !g.json {
                        eprintln!("command id: {command_id} (nothing was sent)");
                    }
                    return ExitCode::from(UNREACHABLE);
                }
            };
            match request.send(&mut client, timeout).await {
                Ok(reply) => {
                    output::print_reply(&reply, g.json);
                    ExitCode::SUCCESS
                }
                Err(status) => output::report_status(&status, command_id, g.json),
            }
        }
    }
}
