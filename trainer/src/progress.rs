//! Progress bars for everything that takes more than a moment.

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar drawn with `template`, or a hidden one when `quiet`.
pub fn bar(quiet: bool, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("progress template is valid")
            .progress_chars("=> "),
    );
    bar
}
