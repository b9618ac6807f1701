//! Sets labelled by their file names: UTKFace's `[age]_[gender]_[race]_[date&time].jpg` and
//! FG-NET's `001A02.JPG` (subject 001, age 2).

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use dldl::MAX_AGE;
use serde::{Deserialize, Serialize};

use crate::data::{FaceMode, Sample, formats::ReadReport, sets::Sigma};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSpec {
    pub dir: PathBuf,
    pub sigma: Option<Sigma>,
    #[serde(default)]
    pub faces: FaceMode,
    pub limit: Option<usize>,
    /// A text file of file names, one a line (a split such as `configs/splits/utkface-train.txt`):
    /// only these files of `dir` are read. Relative to the configuration, as `dir` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<PathBuf>,
}

/// UTKFace's naming, for messages.
pub const UTKFACE_PATTERN: &str = "`[age]_[gender]_[race]_[date&time].jpg` (UTKFace)";
/// FG-NET's naming, for messages.
pub const FGNET_PATTERN: &str = "`001A02.JPG` (FG-NET: subject, `A`, age)";

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

/// The files of a split list (`spec.list`) inside `spec.dir`; a listed file that is not there is
/// counted in `report`, not fatal (a copy of the set cleaned another way lacks a few).
fn listed_files(spec: &FolderSpec, list: &Path, report: &mut ReadReport) -> Result<Vec<PathBuf>> {
    if !spec.dir.is_dir() {
        bail!(
            "cannot read the folder {}: it does not exist or is not a folder",
            spec.dir.display()
        );
    }
    let text = fs::read_to_string(list)
        .with_context(|| format!("cannot read the split list {}", list.display()))?;
    let mut paths = Vec::new();
    for (line, name) in text.lines().enumerate() {
        let name = name.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        if name.contains(['/', '\\']) || name == ".." {
            bail!(
                "{}:{}: `{name}` is not a file name (a split list names files of the folder,                  one a line)",
                list.display(),
                line + 1
            );
        }
        let path = spec.dir.join(name);
        if path.is_file() {
            paths.push(path);
        } else {
            report.rows += 1;
            report.leave_out("listed in the split but not in the folder");
        }
    }
    Ok(paths)
}

pub fn read_folder(
    spec: &FolderSpec,
    age_of: fn(&str) -> Option<f32>,
    pattern: &str,
    sigma: Sigma,
    report: &mut ReadReport,
) -> Result<Vec<Sample>> {
    let mut paths: Vec<PathBuf> = match &spec.list {
        Some(list) => listed_files(spec, list, report)?,
        None => fs::read_dir(&spec.dir)
            .with_context(|| format!("cannot read the folder {}", spec.dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect(),
    };
    paths.sort();
    let mut samples = Vec::new();
    for path in paths {
        report.rows += 1;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !is_image(&path) {
            report.leave_out("not a .jpg, .jpeg or .png file");
            continue;
        }
        match age_of(name) {
            None => report.leave_out("file name does not follow the set's pattern"),
            Some(age) if age > MAX_AGE as f32 => report.leave_out("age above 100"),
            Some(mu) => samples.push(Sample {
                path,
                mu,
                sigma: sigma.at(mu),
            }),
        }
    }
    if samples.is_empty() {
        bail!(
            "{} holds no image named {pattern} ({} files looked at); point `dir` at the set's \
             image folder",
            spec.dir.display(),
            report.rows
        );
    }
    Ok(samples)
}
