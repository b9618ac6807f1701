//! ChaLearn LAP apparent age: 2015's `image;mean;std` rows and 2016's `image,mean,std` rows,
//! with or without a header, beside the images or with an image folder named.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use crate::data::{
    FaceMode, Sample,
    formats::{ReadReport, label, number},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChalearnSpec {
    pub csv: PathBuf,
    /// The image folder; default: the CSV's folder.
    pub images: Option<PathBuf>,
    #[serde(default)]
    pub faces: FaceMode,
    pub limit: Option<usize>,
}

pub fn read_chalearn(
    spec: &ChalearnSpec,
    delimiter: char,
    report: &mut ReadReport,
) -> Result<Vec<Sample>> {
    let csv = &spec.csv;
    let images = spec
        .images
        .clone()
        .unwrap_or_else(|| csv.parent().unwrap_or(Path::new(".")).to_path_buf());
    let mut samples = Vec::new();
    for (index, (line, fields)) in crate::data::csv::rows(csv, delimiter as u8)?
        .iter()
        .enumerate()
    {
        // A header names its columns; a data row's second field is a number.
        if index == 0 && fields.get(1).is_some_and(|f| f.parse::<f32>().is_err()) {
            continue;
        }
        report.rows += 1;
        if fields.len() != 3 {
            let other = if delimiter == ';' { ',' } else { ';' };
            let hint = if fields.iter().any(|f| f.contains(other)) {
                format!(
                    " (separated by `{other}`: is this the other year's format? 2015 uses `;`, \
                     2016 `,`)"
                )
            } else {
                String::new()
            };
            bail!(
                "{}:{line}: expected `image{delimiter}mean{delimiter}std`, found {} fields{hint}",
                csv.display(),
                fields.len()
            );
        }
        let mu = number(csv, *line, "mean", &fields[1])?;
        let sigma = number(csv, *line, "std", &fields[2])?;
        label(csv, *line, mu, sigma)?;
        samples.push(Sample {
            path: images.join(&fields[0]),
            mu,
            sigma,
        });
    }
    Ok(samples)
}
