//! What every carectl suite needs: running the binary under test and showing its output.

use std::process::{Command, Output};

/// Run carectl against `server` with `args`, with none of the caller's identity settings.
pub fn carectl(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_carectl"))
        .arg("--server")
        .arg(server)
        .args(args)
        .env_remove("CAREWOVEN_TOKEN")
        .env_remove("CAREWOVEN_ISSUER_DIR")
        .env_remove("CAREWOVEN_ORG")
        .output()
        .expect("running carectl")
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
