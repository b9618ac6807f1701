//! Sets labelled by their file names: UTKFace's `[age]_[gender]_[race]_[date&time].jpg` and
//! FG-NET's `001A02.JPG` (subject 001, age 2).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use dldl::MAX_AGE;
use serde::{Deserialize, Serialize};

use crate::data::{FaceMode, Sample, formats::ReadReport};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSpec {
    pub dir: PathBuf,
    pub sigma: Option<f32>,
    #[serde(default)]
    pub faces: FaceMode,
    pub limit: Option<usize>,
}

/// UTKFace: the age is the first `_`-separated field of the file name.
pub fn utkface_age(name: &str) -> Option<f32> {
    let age: u32 = name.split('_').next()?.parse().ok()?;
    Some(age as f32)
}

/// FG-NET: `SSSAaa[x].JPG`, subject `SSS`, age `aa`, an optional letter for several photos at
/// one age.
pub fn fgnet_age(name: &str) -> Option<f32> {
    let stem = name.split('.').next()?;
    let (subject, rest) = stem.split_at_checked(3)?;
    let rest = rest.strip_prefix(['A', 'a'])?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &rest[digits.len()..];
    (subject.chars().all(|c| c.is_ascii_digit())
        && (1..=2).contains(&digits.len())
        && suffix.chars().all(|c| c.is_ascii_alphabetic())
        && suffix.len() <= 1)
        .then(|| digits.parse::<u32>().ok())
        .flatten()
        .map(|a| a as f32)
}

pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}

pub fn read_folder(
    spec: &FolderSpec,
    age_of: fn(&str) -> Option<f32>,
    sigma: f32,
    report: &mut ReadReport,
) -> Result<Vec<Sample>> {
    let mut paths: Vec<PathBuf> = fs::read_dir(&spec.dir)
        .with_context(|| format!("cannot read the folder {}", spec.dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_image(p))
        .collect();
    paths.sort();
    let mut samples = Vec::new();
    for path in paths {
        report.rows += 1;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match age_of(name) {
            None => report.leave_out("file name does not follow the set's pattern"),
            Some(age) if age > MAX_AGE as f32 => report.leave_out("age above 100"),
            Some(mu) => samples.push(Sample { path, mu, sigma }),
        }
    }
    Ok(samples)
}
