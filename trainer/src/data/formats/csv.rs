//! The project's own format, and the synthetic set's: `path,mean[,std]` rows.
//!
//! A row names an image (relative to the CSV's folder, or absolute), the age μ (the mean of the
//! human guesses for apparent-age data, the real age otherwise) and optionally σ (their standard
//! deviation). Rows without σ take the configured `--sigma`. A first row whose first field is
//! `path` is a header; rows whose first field starts with `#` are comments.

use std::path::Path;

use anyhow::{Context, Result, bail};
use dldl::distribution::label::validate_label;

use crate::data::{Sample, formats::quoted, sets::Sigma};

/// Reads a `path,mean[,std]` CSV. Every malformed row is an error naming `file:line`.
pub fn read_csv(csv_path: &Path, default_sigma: Sigma) -> Result<Vec<Sample>> {
    let rows = crate::data::csv::rows(csv_path, b',')
        .with_context(|| format!("cannot read the CSV {}", csv_path.display()))?;
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let mut samples = Vec::new();
    for (index, (line_no, fields)) in rows.iter().enumerate() {
        let at = || format!("{}:{line_no}", csv_path.display());
        if fields[0].starts_with('#') {
            continue;
        }
        if index == 0 && fields[0].eq_ignore_ascii_case("path") {
            continue;
        }
        if !(2..=3).contains(&fields.len()) {
            bail!(
                "{}: expected `path,mean[,std]`, found {} fields",
                at(),
                fields.len()
            );
        }
        if fields[0].is_empty() {
            bail!("{}: the image path is empty", at());
        }
        let mu: f32 = fields[1].parse().with_context(|| {
            format!("{}: the age `{}` is not a number", at(), quoted(&fields[1]))
        })?;
        let sigma: f32 = match fields.get(2) {
            Some(s) if !s.is_empty() => s
                .parse()
                .with_context(|| format!("{}: the std `{}` is not a number", at(), quoted(s)))?,
            _ => default_sigma.at(mu),
        };
        validate_label(mu, sigma).with_context(|| format!("{}: bad label", at()))?;
        samples.push(Sample {
            path: base.join(&fields[0]),
            mu,
            sigma,
        });
    }
    if samples.is_empty() {
        bail!("{} holds no samples", csv_path.display());
    }
    Ok(samples)
}
