//! `trainer distill --images DIR`: a student stream trained on unlabelled face photographs,
//! with the pretrained network's distributions as its KL targets — for users who have faces but
//! no labels.
//!
//! The teacher's answers are computed once (each face and its mirror image, averaged) and kept in
//! `<out>/teacher/`: `train.csv` / `valid.csv` (image, the teacher's E[age] and σ) and
//! `train.targets` (its distributions, 101 little-endian f32 per row). Training then runs as any
//! other run: checkpoints, resumable, validated against the teacher's E[age].

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use dldl::{
    AGE_BINS,
    burn::tensor::Device,
    distribution::{expected_age, std_dev},
    face::pipeline::Stream,
    networks::pretrained::{self},
};

use crate::{
    artifacts::{card, models},
    data::Sample,
    data::augment::mirror,
    data::chips::{self, Chip, MultipleFaces, PreprocessOptions},
    data::load::LoadOptions,
    data::{
        FaceMode,
        sets::{CsvSpec, DatasetSpec},
    },
    device, files,
    progress::bar,
    train::{
        run::{self, TrainSummary},
        spec::{RunSpec, TrainOptions},
    },
};

/// Every PNG or JPEG under `dir`, sorted.
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in fs::read_dir(&folder)
            .with_context(|| format!("cannot read the folder {}", folder.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        bail!("{} holds no PNG or JPEG images", dir.display());
    }
    Ok(found)
}

/// Whether `path` goes to the validation split: a stable hash of its name, not a random draw,
/// so that a rerun splits the same way.
fn is_valid(path: &Path, fraction: f32) -> bool {
    let h = chips::fnv1a(path.to_string_lossy().as_bytes());
    ((h >> 11) as f64 / (1u64 << 53) as f64) < f64::from(fraction)
}

#[derive(Debug, Clone)]
pub struct DistillOptions {
    pub images: PathBuf,
    pub valid_fraction: f32,
    pub multiple_faces: MultipleFaces,
    /// The run: architecture, input size, optimiser… (its train/valid sets are filled in here).
    pub train: TrainOptions,
}

fn write_split(
    folder: &Path,
    name: &str,
    rows: &[(PathBuf, Vec<f32>)],
    with_targets: bool,
) -> Result<PathBuf> {
    let mut csv = String::from("path,mean,std\n");
    let mut targets = Vec::with_capacity(rows.len() * AGE_BINS * 4);
    for (path, p) in rows {
        let (mean, sigma) = (expected_age(p)?, std_dev(p)?);
        let absolute = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let text = absolute.to_string_lossy();
        if text.contains(',') {
            bail!(
                "{}: image paths with a comma cannot go into the teacher's CSV; rename it",
                path.display()
            );
        }
        csv.push_str(&format!("{text},{mean},{sigma}\n"));
        targets.extend(p.iter().flat_map(|v| v.to_le_bytes()));
    }
    let csv_path = folder.join(format!("{name}.csv"));
    if with_targets {
        files::write(&folder.join(format!("{name}.targets")), &targets)?;
    }
    files::write(&csv_path, csv.as_bytes())?;
    Ok(csv_path)
}

/// The teacher's distribution for each chip (cut at the teacher's input size): the mean of the
/// chip's and its mirror image's, in batches of 64.
fn teacher_distributions(
    teacher: &Stream,
    chips: &[Chip],
    quiet: bool,
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let progress = bar(quiet, "teacher [{bar:30}] {pos}/{len} faces {eta}");
    progress.set_length(chips.len() as u64);
    let mut out = Vec::with_capacity(chips.len());
    for batch in chips.chunks(64) {
        let pixels: Vec<Vec<u8>> = batch
            .iter()
            .map(|c| {
                Ok(crate::data::images::decode_image(&c.path)?
                    .to_rgb8()
                    .into_raw())
            })
            .collect::<Result<_>>()?;
        let mirrored: Vec<Vec<u8>> = pixels
            .iter()
            .map(|p| mirror(p, teacher.input_size))
            .collect();
        let refs: Vec<&[u8]> = pixels.iter().map(Vec::as_slice).collect();
        let mirror_refs: Vec<&[u8]> = mirrored.iter().map(Vec::as_slice).collect();
        let p = (teacher.distributions(&refs, device)
            + teacher.distributions(&mirror_refs, device))
            / 2.0;
        let rows = device::values(p, device)?;
        if rows.iter().any(|v| !v.is_finite()) {
            bail!(
                "the teacher `{}` gave a NaN or an infinity; its weights are damaged: train it again",
                teacher.name
            );
        }
        out.extend(rows.chunks_exact(AGE_BINS).map(<[f32]>::to_vec));
        progress.inc(batch.len() as u64);
    }
    progress.finish_and_clear();
    Ok(out)
}

/// A pipeline stage's soft targets (`teacher = "stage"`): the distributions of the trained stream
/// in `teacher` (a run folder) on the faces of `set`, one row of 101 f32 per sample the set reads
/// (a sample with no face gets zeros; it never reaches training), written to `out` as
/// [`load::read_targets`](crate::data::load::read_targets) reads them. Kept when `out` exists:
/// a resumed stage does not run the teacher again.
pub fn stage_targets(
    teacher: &Path,
    set: &DatasetSpec,
    options: &LoadOptions,
    out: &Path,
    device: &Device,
) -> Result<()> {
    if out.exists() {
        if !options.quiet {
            eprintln!("teacher: reusing its answers in {}", out.display());
        }
        return Ok(());
    }
    let loaded = card::load_model(teacher, device)?;
    card::finite(&loaded.model, teacher)?;
    let stream = Stream {
        name: teacher.display().to_string(),
        network: loaded.model.for_inference(),
        input_size: loaded.card.model.input_size,
        normalization: loaded.card.model.normalization,
        weight: 1.0,
    };
    let read = set.read()?;
    let finder = (read.faces == FaceMode::Align)
        .then(|| models::load_face_finder(&options.models, &Device::flex()))
        .transpose()?;
    let progress = bar(options.quiet, "faces   [{bar:30}] {pos}/{len} images {eta}");
    let (chips, report) = chips::preprocess(
        &read.samples,
        read.faces,
        &PreprocessOptions {
            cache: options.cache.clone(),
            size: stream.input_size,
            multiple_faces: options.multiple_faces,
            skip_unreadable: options.skip_unreadable,
        },
        finder.as_ref(),
        &progress,
    )
    .with_context(|| set.name())?;
    progress.finish_and_clear();
    if !options.quiet {
        eprintln!("{}", report.summary("teacher", options.multiple_faces));
    }
    let mut rows = vec![0.0f32; read.samples.len() * AGE_BINS];
    for (chip, row) in chips.iter().zip(teacher_distributions(
        &stream,
        &chips,
        options.quiet,
        device,
    )?) {
        rows[chip.sample * AGE_BINS..(chip.sample + 1) * AGE_BINS].copy_from_slice(&row);
    }
    let bytes: Vec<u8> = rows.iter().flat_map(|v| v.to_le_bytes()).collect();
    files::write(out, &bytes)
}

/// Runs the teacher over the images (unless its answers are already in `<out>/teacher`).
fn teach(options: &DistillOptions, device: &Device) -> Result<(PathBuf, Option<PathBuf>)> {
    let train = &options.train;
    let folder = train.out.join("teacher");
    let train_csv = folder.join("train.csv");
    let valid_csv = folder.join("valid.csv");
    let done = folder.join("done.json");
    if done.exists() && train_csv.exists() {
        if !train.quiet {
            eprintln!("teacher: reusing its answers in {}", folder.display());
        }
        return Ok((train_csv, valid_csv.exists().then_some(valid_csv)));
    }
    fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let paths = list_images(&options.images)?;
    let samples: Vec<Sample> = paths
        .iter()
        .map(|path| Sample {
            path: path.clone(),
            mu: 0.0,
            sigma: 0.0,
        })
        .collect();
    let detector = models::load_face_finder(&train.models, device)?;
    let teacher = models::load_pretrained(&train.models, device)?;
    let stream = Stream::pretrained(teacher);
    let progress = bar(train.quiet, "faces   [{bar:30}] {pos}/{len} images {eta}");
    let (chips, report) = chips::preprocess(
        &samples,
        FaceMode::Align,
        &PreprocessOptions {
            cache: train.cache.clone(),
            size: pretrained::CHIP_SIZE,
            multiple_faces: options.multiple_faces,
            skip_unreadable: train.skip_unreadable,
        },
        Some(&detector),
        &progress,
    )?;
    progress.finish_and_clear();
    if !train.quiet {
        eprintln!("{}", report.summary("teacher", options.multiple_faces));
    }
    if chips.is_empty() {
        bail!(
            "no face was found in the {} images of {}",
            paths.len(),
            options.images.display()
        );
    }
    let mut train_rows = Vec::new();
    let mut valid_rows = Vec::new();
    for (chip, row) in
        chips
            .iter()
            .zip(teacher_distributions(&stream, &chips, train.quiet, device)?)
    {
        let path = paths[chip.sample].clone();
        if is_valid(&path, options.valid_fraction) {
            valid_rows.push((path, row));
        } else {
            train_rows.push((path, row));
        }
    }
    if train_rows.is_empty() {
        bail!("every face fell into the validation split; lower --valid-fraction");
    }
    let train_csv = write_split(&folder, "train", &train_rows, true)?;
    let valid_csv = (!valid_rows.is_empty())
        .then(|| write_split(&folder, "valid", &valid_rows, false))
        .transpose()?;
    files::write(
        &done,
        &serde_json::to_vec_pretty(&serde_json::json!({
            "teacher": models::AGE_MODEL,
            "images": paths.len(),
            "train": train_rows.len(),
            "valid": valid_rows.len(),
            "preprocess": report,
        }))?,
    )?;
    Ok((train_csv, valid_csv))
}

pub fn distill(
    options: &DistillOptions,
    device: &Device,
    device_name: &str,
) -> Result<TrainSummary> {
    if !(0.0..1.0).contains(&options.valid_fraction) {
        bail!("--valid-fraction must lie in [0, 1)");
    }
    let (train_csv, valid_csv) = teach(options, device)?;
    let csv = |path: PathBuf| {
        DatasetSpec::Csv(CsvSpec {
            path,
            sigma: None,
            faces: FaceMode::Align,
            limit: None,
        })
    };
    let targets = train_csv.with_extension("targets");
    let spec = RunSpec {
        train: vec![csv(train_csv)],
        valid: valid_csv.into_iter().map(csv).collect(),
        soft_targets: Some(targets),
        multiple_faces: options.multiple_faces,
        ..options.train.spec.clone()
    };
    let run = TrainOptions {
        spec,
        resume: true,
        ..options.train.clone()
    };
    run::train(&run, device, device_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_is_stable_and_near_the_fraction() {
        let paths: Vec<PathBuf> = (0..2000)
            .map(|i| PathBuf::from(format!("p/{i}.jpg")))
            .collect();
        let valid = paths.iter().filter(|p| is_valid(p, 0.1)).count();
        assert!((150..250).contains(&valid), "{valid}");
        assert!(paths.iter().all(|p| is_valid(p, 0.1) == is_valid(p, 0.1)));
        assert_eq!(paths.iter().filter(|p| is_valid(p, 0.0)).count(), 0);
    }
}
