//! Reading the sets of one split, cutting their chips through the cache, and holding them:
//! from data-set specs to a [`LoadedSet`].

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use dldl::burn::tensor::Device;

use crate::{
    artifacts::models,
    data::{
        FaceMode,
        chips::{self, MultipleFaces, PreprocessOptions},
        loaded::LoadedSet,
        sets::DatasetSpec,
    },
    progress::bar,
};

/// How sets are read, preprocessed and held: what [`load_sets`] needs of a run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub cache: PathBuf,
    pub models: PathBuf,
    pub multiple_faces: MultipleFaces,
    pub skip_unreadable: bool,
    pub memory_limit: usize,
    pub quiet: bool,
}

/// Sets larger than this at the input size stay on disk unless told otherwise.
pub const DEFAULT_MEMORY_LIMIT: usize = 4 << 30;

/// Reads, preprocesses (through the cache) and loads the sets of one split.
pub fn load_sets(
    specs: &[DatasetSpec],
    size: usize,
    options: &LoadOptions,
    what: &str,
) -> Result<LoadedSet> {
    load_sets_with_targets(specs, size, options, what, None)
}

/// Reads a soft-target file: `rows` distributions of 101 little-endian f32.
pub fn read_targets(path: &Path, rows: usize) -> Result<Vec<Vec<f32>>> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let row_bytes = dldl::AGE_BINS * 4;
    if bytes.len() != rows * row_bytes {
        bail!(
            "{} holds {} bytes; {rows} rows of {} ages need {}",
            path.display(),
            bytes.len(),
            dldl::AGE_BINS,
            rows * row_bytes
        );
    }
    Ok(bytes
        .chunks_exact(row_bytes)
        .map(|row| {
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect())
}

/// [`load_sets`], attaching the rows of a soft-target file to a single set's images.
pub fn load_sets_with_targets(
    specs: &[DatasetSpec],
    size: usize,
    options: &LoadOptions,
    what: &str,
    soft_targets: Option<&Path>,
) -> Result<LoadedSet> {
    if soft_targets.is_some() && specs.len() != 1 {
        bail!("soft targets go with exactly one training set");
    }
    let mut targets = Vec::new();
    let preprocess = PreprocessOptions {
        cache: options.cache.clone(),
        size,
        multiple_faces: options.multiple_faces,
        skip_unreadable: options.skip_unreadable,
    };
    let mut detector = None;
    let mut chips = Vec::new();
    let mut skipped = 0;
    let mut left_out = Vec::new();
    for spec in specs {
        let read = spec.read()?;
        if !options.quiet {
            let left_out: Vec<String> = read
                .report
                .left_out
                .iter()
                .map(|(why, n)| format!("{n} ({why})"))
                .collect();
            eprintln!(
                "{what}: {}: {} rows, {} used{}",
                read.report.name,
                read.report.rows,
                read.report.kept,
                if left_out.is_empty() {
                    String::new()
                } else {
                    format!("; left out {}", left_out.join(", "))
                }
            );
        }
        if read.faces == FaceMode::Align && detector.is_none() {
            detector = Some(models::load_face_finder(&options.models, &Device::flex())?);
        }
        let progress = bar(
            options.quiet,
            &format!("faces {what:<5} [{{bar:30}}] {{pos}}/{{len}} images {{eta}}"),
        );
        let (found, report) = chips::preprocess(
            &read.samples,
            read.faces,
            &preprocess,
            detector.as_ref(),
            &progress,
        )
        .with_context(|| spec.name())?;
        progress.finish_and_clear();
        if !options.quiet {
            eprintln!("{}", report.summary(what, options.multiple_faces));
        }
        skipped += report.unreadable;
        left_out.extend(report.left_out);
        if let Some(path) = soft_targets {
            let rows = read_targets(path, read.samples.len())?;
            targets.extend(found.iter().map(|chip| rows[chip.sample].clone()));
        }
        chips.extend(found);
    }
    if !left_out.is_empty() {
        // Listed beside the chips, so that a run's summary can name every image left out.
        let list = options.cache.join(format!("left-out-{what}.txt"));
        crate::files::write(&list, (left_out.join("\n") + "\n").as_bytes())?;
        if !options.quiet {
            eprintln!(
                "{what}: the {} images left out (no face, unreadable) are listed in {}",
                left_out.len(),
                list.display()
            );
        }
    }
    let progress = bar(
        options.quiet,
        &format!("loading {what:<5} [{{bar:30}}] {{pos}}/{{len}} images {{eta}}"),
    );
    let mut set = LoadedSet::from_chips(&chips, size, options.memory_limit, &progress)
        .with_context(|| format!("the {what} sets"))?;
    progress.finish_and_clear();
    set.skipped = skipped;
    if soft_targets.is_some() {
        set.targets = Some(targets);
    }
    Ok(set)
}
