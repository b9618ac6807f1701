//! IMDB-WIKI (Rothe et al. 2015): `imdb.mat` / `wiki.mat`, a MATLAB struct of cells, with the
//! authors' filters: a face score of at least 1, no second face, an age of 0–100 at the middle
//! of the year the photo was taken.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::{FaceMode, Sample, formats::ReadReport, sets::Sigma};

use dldl::MAX_AGE;

use crate::data::formats::matfile::{self, MatValue};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImdbWikiSpec {
    pub mat: PathBuf,
    /// The folder `full_path` is relative to; default: the `.mat`'s folder.
    pub images: Option<PathBuf>,
    /// Keep faces the authors' detector scored at least this (−∞ means no face).
    #[serde(default = "min_face_score")]
    pub min_face_score: f64,
    /// Keep images with a second face only when it scored below this; by default any second
    /// face leaves the image out.
    pub max_second_face_score: Option<f64>,
    pub sigma: Option<Sigma>,
    #[serde(default)]
    pub faces: FaceMode,
    pub limit: Option<usize>,
}

fn min_face_score() -> f64 {
    1.0
}

/// Days from MATLAB's day 1 (1 January of year 0) to the civil date.
pub fn datenum_to_date(datenum: f64) -> (i64, u32, u32) {
    // MATLAB's datenum 719529 is 1970-01-01.
    let days = datenum.floor() as i64 - 719_529;
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Age in completed years on 1 July of `photo_taken` (the authors take photos as mid-year).
pub fn imdb_age(dob: f64, photo_taken: f64) -> Option<f32> {
    if !dob.is_finite() || !photo_taken.is_finite() || dob < 1.0 {
        return None;
    }
    let (year, month, day) = datenum_to_date(dob);
    let taken = photo_taken as i64;
    let mut age = taken - year;
    if (month, day) > (7, 1) {
        age -= 1;
    }
    Some(age as f32)
}

pub fn read_imdb_wiki(
    spec: &ImdbWikiSpec,
    sigma: Sigma,
    report: &mut ReadReport,
) -> Result<Vec<Sample>> {
    let mat = &spec.mat;
    let bytes = fs::read(mat).with_context(|| format!("cannot read {}", mat.display()))?;
    let file = matfile::parse(&bytes).with_context(|| format!("cannot read {}", mat.display()))?;
    let wrong = |what: String| {
        anyhow::anyhow!(
            "{} is not IMDB-WIKI metadata: {what} (expected one 1×1 struct `imdb` or `wiki` \
             with 1×N fields dob, photo_taken, full_path, face_score, second_face_score)",
            mat.display()
        )
    };
    let (name, value) = file
        .iter()
        .find(|(k, _)| *k == "imdb" || *k == "wiki")
        .or_else(|| (file.len() == 1).then(|| file.iter().next()).flatten())
        .ok_or_else(|| {
            wrong(format!(
                "it holds {}",
                file.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
    let MatValue::Struct { dims, fields } = value else {
        return Err(wrong(format!("`{name}` is a {}", value.describe())));
    };
    if dims.iter().product::<usize>() != 1 {
        return Err(wrong(format!("`{name}` is a {}", value.describe())));
    }
    let field = |key: &str| -> Result<&MatValue> {
        fields
            .get(key)
            .and_then(|v| v.first())
            .ok_or_else(|| wrong(format!("`{name}` has no field `{key}`")))
    };
    let numbers = |key: &str| -> Result<&[f64]> {
        match field(key)? {
            MatValue::Numeric { data, .. } => Ok(data),
            other => Err(wrong(format!("`{name}.{key}` is a {}", other.describe()))),
        }
    };
    let dob = numbers("dob")?;
    let taken = numbers("photo_taken")?;
    let score = numbers("face_score")?;
    let second = numbers("second_face_score")?;
    let MatValue::Cell { items: paths, .. } = field("full_path")? else {
        return Err(wrong(format!(
            "`{name}.full_path` is a {}, not a cell array of strings",
            field("full_path")?.describe()
        )));
    };
    let n = paths.len();
    for (key, len) in [
        ("dob", dob.len()),
        ("photo_taken", taken.len()),
        ("face_score", score.len()),
        ("second_face_score", second.len()),
    ] {
        if len != n {
            return Err(wrong(format!(
                "`{name}.{key}` has {len} entries, `full_path` {n}"
            )));
        }
    }
    let images = spec
        .images
        .clone()
        .unwrap_or_else(|| mat.parent().unwrap_or(Path::new(".")).to_path_buf());
    let mut samples = Vec::new();
    for i in 0..n {
        report.rows += 1;
        let Some(path) = paths[i].as_string().filter(|p| !p.is_empty()) else {
            return Err(wrong(format!(
                "`{name}.full_path{{{}}}` is not a string",
                i + 1
            )));
        };
        if !(score[i].is_finite() && score[i] >= spec.min_face_score) {
            report.leave_out("no face, or face score below min_face_score");
            continue;
        }
        let second_ok = match spec.max_second_face_score {
            None => second[i].is_nan(),
            Some(max) => second[i].is_nan() || second[i] < max,
        };
        if !second_ok {
            report.leave_out("a second face");
            continue;
        }
        match imdb_age(dob[i], taken[i]) {
            Some(age) if (0.0..=MAX_AGE as f32).contains(&age) => samples.push(Sample {
                path: images.join(path),
                mu: age,
                sigma: sigma.at(age),
            }),
            _ => report.leave_out("date of birth or photo year gives no age in 0–100"),
        }
    }
    Ok(samples)
}
