//! Progress on long reads (board pages, feed catch-up, access-list pages): a spinner with a
//! count on stderr, drawn only when stderr is a terminal, so piped and `--json` output stay
//! clean.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A spinner counting `unit`s, or a hidden bar when stderr is not a terminal.
pub fn counter(unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template(&format!("{{spinner}} {{pos}} {unit} {{msg}}"))
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
