//! Progress bars for everything that takes more than a moment, and errors on one line.

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

/// An error and its causes on one line, as the trainer prints them (`what: why: detail`), each
/// part's own line breaks folded into `; ` and trailing blanks dropped (some image decoders end
/// their messages with a line break).
pub fn one_line<I: IntoIterator<Item = String>>(parts: I) -> String {
    parts
        .into_iter()
        .map(|part| {
            part.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_fold_onto_one_line() {
        let parts = [
            "cannot decode a.jpg".to_string(),
            "Not enough bytes\n".into(),
            "x\n  y".into(),
        ];
        assert_eq!(
            super::one_line(parts),
            "cannot decode a.jpg: Not enough bytes: x; y"
        );
    }
}
