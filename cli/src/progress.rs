//! A byte progress bar on stderr, shown only on a terminal and only for
//! inputs large enough to take a moment.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Inputs below this size finish before a bar would be worth drawing.
const SHOW_FROM: u64 = 8 << 20;

/// A progress bar, or nothing.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar over `total` bytes, if stderr is a terminal.
    pub(crate) fn bytes(total: u64) -> Self {
        if total < SHOW_FROM || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg:.bold} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar: Some(bar) }
    }

    /// Bytes done so far, and what is being read (a file name, shortened
    /// to keep the bar on one line).
    pub(crate) fn set(&self, done: u64, what: &str) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            let what: String = if what.chars().count() > 24 {
                what.chars().take(23).chain(['\u{2026}']).collect()
            } else {
                what.to_owned()
            };
            if b.message() != what {
                b.set_message(what);
            }
        }
    }

    /// Removes the bar.
    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
