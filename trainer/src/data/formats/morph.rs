//! MORPH II: its metadata CSV, with an age column and an image path column (renameable).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dldl::MAX_AGE;
use serde::{Deserialize, Serialize};

use crate::data::{
    FaceMode, Sample,
    formats::{ReadReport, label, number, same_width},
    sets::Sigma,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MorphSpec {
    pub csv: PathBuf,
    /// The folder the path column is relative to; default: the CSV's folder.
    pub images: Option<PathBuf>,
    #[serde(default = "morph_path_column")]
    pub path_column: String,
    #[serde(default = "morph_age_column")]
    pub age_column: String,
    pub sigma: Option<Sigma>,
    #[serde(default)]
    pub faces: FaceMode,
    pub limit: Option<usize>,
}

fn morph_path_column() -> String {
    "photo".to_string()
}

fn morph_age_column() -> String {
    "age".to_string()
}

pub fn read_morph(spec: &MorphSpec, sigma: Sigma, report: &mut ReadReport) -> Result<Vec<Sample>> {
    let csv = &spec.csv;
    let images = spec
        .images
        .clone()
        .unwrap_or_else(|| csv.parent().unwrap_or(Path::new(".")).to_path_buf());
    let rows = crate::data::csv::rows(csv, b',')?;
    let Some(((_, columns), rows)) = rows.split_first() else {
        bail!("{} is empty", csv.display());
    };
    let column = |name: &str| {
        columns.iter().position(|c| c == name).with_context(|| {
            format!(
                "{}:1: no `{name}` column (found {}); name the columns with path_column / \
                 age_column",
                csv.display(),
                columns.join(", ")
            )
        })
    };
    let (path_at, age_at) = (column(&spec.path_column)?, column(&spec.age_column)?);
    let mut samples = Vec::new();
    for (line, fields) in rows {
        report.rows += 1;
        same_width(csv, *line, fields, columns)?;
        let mu = number(csv, *line, "age", &fields[age_at])?;
        if mu > MAX_AGE as f32 {
            report.leave_out("age above 100");
            continue;
        }
        let sigma = sigma.at(mu);
        label(csv, *line, mu, sigma)?;
        samples.push(Sample {
            path: images.join(&fields[path_at]),
            mu,
            sigma,
        });
    }
    Ok(samples)
}
