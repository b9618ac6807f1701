//! One reader per published data-set layout, each turning its set into [`Sample`]s
//! (`crate::data::Sample`); [`crate::data::sets::DatasetSpec`] names them in configurations.
//! [`matfile`] reads the MATLAB files IMDB-WIKI ships. What the readers share is here: the report
//! of what a set held, and the checks of a row's fields.

pub mod appa_real;
pub mod chalearn;
pub mod csv;
pub mod folder;
pub mod imdb_wiki;
pub mod matfile;
pub mod morph;

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result, bail};
use dldl::distribution::label::validate_label;
use serde::Serialize;

/// What reading a set found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReadReport {
    pub name: String,
    pub rows: usize,
    pub kept: usize,
    /// Rows left out on purpose, by reason.
    pub left_out: BTreeMap<String, usize>,
}

impl ReadReport {
    pub fn leave_out(&mut self, reason: &str) {
        *self.left_out.entry(reason.to_string()).or_default() += 1;
    }
}

/// A field that must be a finite number; the error names `file:line` and the column.
pub fn number(path: &Path, line: usize, what: &str, text: &str) -> Result<f32> {
    text.parse::<f32>()
        .ok()
        .filter(|v| v.is_finite())
        .with_context(|| {
            format!(
                "{}:{line}: the {what} `{}` is not a number",
                path.display(),
                quoted(text)
            )
        })
}

/// Text from a file as a message quotes it: its control characters escaped (`\n` for the line
/// break a quoted CSV field may hold), so that the message stays on one line and shows the text
/// as it is.
pub fn quoted(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

/// Checks that a row has as many fields as the header has columns.
pub fn same_width(path: &Path, line: usize, fields: &[String], columns: &[String]) -> Result<()> {
    if fields.len() != columns.len() {
        bail!(
            "{}:{line}: expected {} fields, found {}",
            path.display(),
            columns.len(),
            fields.len()
        );
    }
    Ok(())
}

/// A label that must make a distribution (μ in 0–100, σ positive); the error names `file:line`.
pub fn label(path: &Path, line: usize, mu: f32, sigma: f32) -> Result<()> {
    validate_label(mu, sigma).with_context(|| format!("{}:{line}: bad label", path.display()))?;
    Ok(())
}
