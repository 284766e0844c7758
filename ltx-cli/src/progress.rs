//! Progress bars on standard error, only when it is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Below this many units a bar is not worth drawing.
const MIN_LEN: u64 = 4096;

/// A bar counting `len` units (pages) labelled `msg`; hidden when standard
/// error is not a terminal or the job is small.
pub fn pages(len: u64, msg: &str) -> ProgressBar {
    if len < MIN_LEN || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12} [{bar:40}] {pos}/{len} pages ({per_sec}, eta {eta})",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(msg.to_string());
    pb
}
