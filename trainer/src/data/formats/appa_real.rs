//! APPA-REAL (Agustsson et al. 2017): `gt_avg_<split>.csv` (file name, the number of ratings,
//! the mean and std of the apparent-age guesses, the real age) and the `<split>/` image folder,
//! with the set's own `*_face.jpg` crops beside each image.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::{
    FaceMode, Sample,
    formats::{ReadReport, label, number, same_width},
    sets::Sigma,
};

/// Which APPA-REAL label to train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AppaLabel {
    /// Mean and std of the human guesses.
    #[default]
    Apparent,
    /// The real age, with the configured σ.
    Real,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppaRealSpec {
    pub root: PathBuf,
    /// `train`, `valid` or `test`.
    pub split: String,
    #[serde(default)]
    pub label: AppaLabel,
    /// Use the set's own `*_face.jpg` crops instead of the whole images.
    #[serde(default)]
    pub crops: bool,
    pub sigma: Option<Sigma>,
    #[serde(default)]
    pub faces: FaceMode,
    pub limit: Option<usize>,
}

pub fn read_appa_real(
    spec: &AppaRealSpec,
    sigma: Sigma,
    report: &mut ReadReport,
) -> Result<Vec<Sample>> {
    if !["train", "valid", "test"].contains(&spec.split.as_str()) {
        bail!(
            "APPA-REAL split `{}`: choose train, valid or test",
            spec.split
        );
    }
    let csv = spec.root.join(format!("gt_avg_{}.csv", spec.split));
    let rows = crate::data::csv::rows(&csv, b',')?;
    let Some(((_, columns), rows)) = rows.split_first() else {
        bail!("{} is empty", csv.display());
    };
    let column = |name: &str| {
        columns.iter().position(|c| c == name).with_context(|| {
            format!(
                "{}:1: no `{name}` column (APPA-REAL's header is \
                 file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age)",
                csv.display()
            )
        })
    };
    let (file, avg, std, real) = (
        column("file_name")?,
        column("apparent_age_avg")?,
        column("apparent_age_std")?,
        column("real_age")?,
    );
    let mut samples = Vec::new();
    for (line, fields) in rows {
        report.rows += 1;
        same_width(&csv, *line, fields, columns)?;
        let (mu, sigma) = match spec.label {
            AppaLabel::Apparent => (
                number(&csv, *line, "apparent_age_avg", &fields[avg])?,
                number(&csv, *line, "apparent_age_std", &fields[std])?,
            ),
            AppaLabel::Real => {
                let mu = number(&csv, *line, "real_age", &fields[real])?;
                (mu, sigma.at(mu))
            }
        };
        label(&csv, *line, mu, sigma)?;
        let mut name = fields[file].clone();
        if name.is_empty() {
            bail!("{}:{line}: the file name is empty", csv.display());
        }
        if spec.crops {
            name.push_str("_face.jpg");
        }
        samples.push(Sample {
            path: spec.root.join(&spec.split).join(name),
            mu,
            sigma,
        });
    }
    Ok(samples)
}
