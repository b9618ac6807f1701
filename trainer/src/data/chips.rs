//! Preprocessing once: every image becomes the network's input chip, cut by the same face
//! pipeline the demo runs (BlazeFace → eyes → dlib-style aligned chip), and is kept in an on-disk
//! cache keyed by the file (path, size, modification time) and the settings. A second run over the
//! same files reads the cache and detects nothing.
//!
//! Images with no face are skipped and counted; images with several faces follow the configured
//! [`MultipleFaces`] policy. Unreadable images stop the run naming the first of them, unless
//! skipping them is asked for.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::UNIX_EPOCH,
};

use anyhow::{Context, Result, bail};
use dldl::{burn::tensor::Device, face::pipeline::FaceFinder};
use indicatif::ProgressBar;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{
    data::FaceMode,
    data::{
        Sample,
        images::{decode_image, square_resize},
    },
    files,
};

/// Bumped whenever the chips this module writes would change for the same settings.
/// 1: chips aligned on BlazeFace's eyes; 2: cut from dlib's five landmarks, as dlib cuts them.
pub const PIPELINE_VERSION: u32 = 2;
/// What each pipeline version changed, for the note shown when a cache of an older one is met.
const PIPELINE_CHANGES: &str = "version 2 cuts each chip from dlib's five landmarks (eye \
                                corners and nose), as the pretrained network's chips were cut";
/// Beside the chips in a cache folder: the pipeline version that wrote them.
const PIPELINE_FILE: &str = "pipeline.json";

/// What to do with an image in which the detector finds several faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MultipleFaces {
    /// Leave the image out (the label may belong to any of them).
    #[default]
    Skip,
    /// Keep the largest face (portrait sets: the subject is the largest face).
    Largest,
}

/// How images are turned into chips.
#[derive(Debug, Clone, PartialEq)]
pub struct PreprocessOptions {
    pub cache: PathBuf,
    pub size: usize,
    pub multiple_faces: MultipleFaces,
    pub skip_unreadable: bool,
}

/// What preprocessing found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PreprocessReport {
    pub images: usize,
    /// Chips (or verdicts) read from the cache.
    pub cached: usize,
    /// Images preprocessed in this run.
    pub processed: usize,
    pub kept: usize,
    pub no_face: usize,
    /// Images with several faces: left out, or their largest face kept, by the policy.
    pub several_faces: usize,
    pub unreadable: usize,
    /// The pipeline version of chips already in the cache when it was older than this one's
    /// (their images are aligned again).
    pub older_pipeline: Option<u32>,
    /// Each image left out, with why: `path: no face found`, `path: unreadable (…)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// The pipeline version recorded in the cache folder when it is older than
/// [`PIPELINE_VERSION`] (a cache of chips without the record counts as version 1); the record
/// is brought up to date.
fn older_pipeline(cache: &Path) -> Result<Option<u32>> {
    let record = cache.join(PIPELINE_FILE);
    let recorded = fs::read(&record)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["version"].as_u64())
        .map(|v| v as u32);
    let has_chips = || {
        fs::read_dir(cache).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
    };
    let older = match recorded {
        Some(v) if v < PIPELINE_VERSION => Some(v),
        Some(_) => None,
        None => has_chips().then_some(1),
    };
    if recorded != Some(PIPELINE_VERSION) {
        files::write(
            &record,
            &serde_json::to_vec(&serde_json::json!({ "version": PIPELINE_VERSION }))?,
        )?;
    }
    Ok(older)
}

impl PreprocessReport {
    pub fn summary(&self, what: &str, policy: MultipleFaces) -> String {
        let several = match policy {
            MultipleFaces::Skip => "left out",
            MultipleFaces::Largest => "largest kept",
        };
        let redone = match self.older_pipeline {
            Some(version) => format!(
                "\n{what}: the face cache held chips of face pipeline version {version}; this is \
                 version {PIPELINE_VERSION} ({PIPELINE_CHANGES}), so every image was aligned \
                 again (the old chips stay until the cache folder is emptied)"
            ),
            None => String::new(),
        };
        format!(
            "{what}: {} of {} images kept ({} from the cache, {} preprocessed now); \
             no face: {}, several faces ({several}): {}, unreadable: {}{redone}",
            self.kept,
            self.images,
            self.cached,
            self.processed,
            self.no_face,
            self.several_faces,
            self.unreadable
        )
    }
}

/// A labelled chip in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Chip {
    pub path: PathBuf,
    /// The sample's index in the list given to [`preprocess`].
    pub sample: usize,
    pub mu: f32,
    pub sigma: f32,
}

/// The outcome for one image, as stored in the cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict")]
enum Verdict {
    Chip,
    NoFace,
    SeveralFaces { faces: usize },
}

/// FNV-1a: a small hash that stays the same across runs and Rust versions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The cache entry's name for `image` under these settings, or an error if it cannot be read.
fn cache_key(image: &Path, mode: FaceMode, options: &PreprocessOptions) -> Result<String> {
    let meta = fs::metadata(image).with_context(|| {
        format!(
            "the image {} is missing; restore it, or remove it from the data set",
            image.display()
        )
    })?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let absolute = fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    let key = format!(
        "v{PIPELINE_VERSION}|{}|{}|{modified}|{mode:?}|{}|{:?}|{}",
        absolute.display(),
        meta.len(),
        options.size,
        options.multiple_faces,
        dldl::face::align::CHIP_PADDING,
    );
    Ok(format!("{:016x}", fnv1a(key.as_bytes())))
}

/// Cuts the chip for one image, or says why there is none.
fn preprocess_one(
    image_path: &Path,
    mode: FaceMode,
    size: usize,
    policy: MultipleFaces,
    finder: Option<&FaceFinder>,
    device: &Device,
) -> Result<(Verdict, Option<image::RgbImage>)> {
    let image = decode_image(image_path)?;
    match mode {
        FaceMode::AsIs => Ok((Verdict::Chip, Some(square_resize(&image, size as u32)?))),
        FaceMode::Align => {
            let rgb = image.to_rgb8();
            let finder = finder.context("aligning faces needs the face detector")?;
            let mut faces = finder
                .detector
                .detect(&rgb, device)
                .map_err(|e| anyhow::anyhow!("{}: {e}", image_path.display()))?;
            if faces.is_empty() {
                return Ok((Verdict::NoFace, None));
            }
            if faces.len() > 1 && policy == MultipleFaces::Skip {
                return Ok((Verdict::SeveralFaces { faces: faces.len() }, None));
            }
            let area = |f: &dldl::face::detector::FaceDetection| {
                (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])
            };
            faces.sort_by(|a, b| area(b).total_cmp(&area(a)));
            let verdict = if faces.len() > 1 {
                Verdict::SeveralFaces { faces: faces.len() }
            } else {
                Verdict::Chip
            };
            // A face whose landmarks are not trusted is cut from its eyes, as predict does.
            let (chip, _) = finder.chip(&rgb, &faces[0], size);
            Ok((verdict, Some(chip)))
        }
    }
}

/// Preprocesses `samples` (all in one [`FaceMode`]) into chips, in parallel, through the cache.
pub fn preprocess(
    samples: &[Sample],
    mode: FaceMode,
    options: &PreprocessOptions,
    finder: Option<&FaceFinder>,
    progress: &ProgressBar,
) -> Result<(Vec<Chip>, PreprocessReport)> {
    if mode == FaceMode::Align && finder.is_none() {
        bail!("aligning faces needs the face detector");
    }
    fs::create_dir_all(&options.cache)
        .with_context(|| format!("cannot create the cache {}", options.cache.display()))?;
    let older = older_pipeline(&options.cache)?;
    let cached = AtomicUsize::new(0);
    progress.set_length(samples.len() as u64);
    // On rayon's global pool, which burn's CPU backend runs its kernels on too; the workers
    // share one detector and landmark predictor.
    let device = Device::flex();
    let results: Vec<Result<(Verdict, PathBuf)>> = samples
        .par_iter()
        .map(|sample| -> Result<(Verdict, PathBuf)> {
            let result = (|| {
                let key = cache_key(&sample.path, mode, options)?;
                let chip_path = options.cache.join(format!("{key}.png"));
                let verdict_path = options.cache.join(format!("{key}.json"));
                let known = fs::read(&verdict_path)
                    .ok()
                    .and_then(|text| serde_json::from_slice::<Verdict>(&text).ok());
                if let Some(verdict) = known {
                    // A verdict without a chip counts only where no chip is needed.
                    let no_chip_needed = verdict == Verdict::NoFace
                        || matches!(verdict, Verdict::SeveralFaces { .. })
                            && options.multiple_faces == MultipleFaces::Skip;
                    if no_chip_needed || chip_path.exists() {
                        cached.fetch_add(1, Ordering::Relaxed);
                        return Ok((verdict, chip_path));
                    }
                }
                let (verdict, chip) = preprocess_one(
                    &sample.path,
                    mode,
                    options.size,
                    options.multiple_faces,
                    finder,
                    &device,
                )?;
                if let Some(chip) = chip {
                    files::write_with(&chip_path, |tmp| {
                        chip.save_with_format(tmp, image::ImageFormat::Png)
                            .with_context(|| format!("cannot write {}", tmp.display()))
                    })?;
                }
                files::write(&verdict_path, &serde_json::to_vec(&verdict)?)?;
                Ok((verdict, chip_path))
            })();
            progress.inc(1);
            result
        })
        .collect();
    let mut report = PreprocessReport {
        images: samples.len(),
        cached: cached.load(Ordering::Relaxed),
        older_pipeline: older,
        ..PreprocessReport::default()
    };
    report.processed = report.images - report.cached;
    let mut chips = Vec::new();
    let mut first_error = None;
    for (index, (sample, result)) in samples.iter().zip(results).enumerate() {
        match result {
            Err(error) => {
                report.unreadable += 1;
                report.processed -= 1;
                report
                    .left_out
                    .push(format!("{}: unreadable ({error:#})", sample.path.display()));
                first_error.get_or_insert(error);
            }
            Ok((verdict, path)) => {
                let keep = match verdict {
                    Verdict::Chip => true,
                    Verdict::NoFace => {
                        report.no_face += 1;
                        report
                            .left_out
                            .push(format!("{}: no face found", sample.path.display()));
                        false
                    }
                    Verdict::SeveralFaces { .. } => {
                        report.several_faces += 1;
                        options.multiple_faces == MultipleFaces::Largest
                    }
                };
                if keep {
                    chips.push(Chip {
                        path,
                        sample: index,
                        mu: sample.mu,
                        sigma: sample.sigma,
                    });
                }
            }
        }
    }
    report.kept = chips.len();
    if let Some(error) = first_error.filter(|_| !options.skip_unreadable) {
        return Err(error.context(format!(
            "{} of {} images could not be read; fix or remove them, or set \
             skip_unreadable (--skip-unreadable) to leave them out",
            report.unreadable, report.images
        )));
    }
    Ok((chips, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, shade: u8) {
        image::RgbImage::from_pixel(20, 12, image::Rgb([shade, 40, 90]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn a_cache_of_an_older_face_pipeline_is_redone_and_said() {
        let dir = tempfile::tempdir().unwrap();
        // A new, empty cache is no older pipeline's.
        assert_eq!(older_pipeline(dir.path()).unwrap(), None);
        // Chips without a record were written before the record existed: version 1.
        let old = tempfile::tempdir().unwrap();
        write_png(&old.path().join("0123456789abcdef.png"), 10);
        assert_eq!(older_pipeline(old.path()).unwrap(), Some(1));
        // The record is brought up to date, so the next run says nothing.
        assert_eq!(older_pipeline(old.path()).unwrap(), None);
        fs::write(old.path().join(PIPELINE_FILE), r#"{"version": 1}"#).unwrap();
        assert_eq!(older_pipeline(old.path()).unwrap(), Some(1));
        let report = PreprocessReport {
            older_pipeline: Some(1),
            ..PreprocessReport::default()
        };
        let summary = report.summary("train", MultipleFaces::Skip);
        assert!(
            summary.contains("version 1") && summary.contains("five landmarks"),
            "{summary}"
        );
    }

    #[test]
    fn a_second_run_reads_everything_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let samples: Vec<Sample> = (0..5)
            .map(|i| {
                let path = dir.path().join(format!("{i}.png"));
                write_png(&path, i as u8 * 40);
                Sample {
                    path,
                    mu: 10.0 * i as f32,
                    sigma: 2.0,
                }
            })
            .collect();
        let options = PreprocessOptions {
            cache: dir.path().join("cache"),
            size: 8,
            multiple_faces: MultipleFaces::Skip,
            skip_unreadable: false,
        };
        let bar = ProgressBar::hidden();
        let (chips, first) = preprocess(&samples, FaceMode::AsIs, &options, None, &bar).unwrap();
        assert_eq!((first.processed, first.cached, first.kept), (5, 0, 5));
        assert_eq!(chips[3].mu, 30.0);
        assert_eq!(chips[3].sample, 3);
        let chip = image::open(&chips[3].path).unwrap().to_rgb8();
        assert_eq!(chip.dimensions(), (8, 8));
        assert_eq!(chip.get_pixel(4, 4).0, [120, 40, 90]);

        let (again, second) = preprocess(&samples, FaceMode::AsIs, &options, None, &bar).unwrap();
        assert_eq!((second.processed, second.cached), (0, 5));
        assert_eq!(again, chips);

        // Another size, or a changed file, is new work.
        let bigger = PreprocessOptions {
            size: 16,
            ..options.clone()
        };
        let (_, third) = preprocess(&samples, FaceMode::AsIs, &bigger, None, &bar).unwrap();
        assert_eq!(third.processed, 5);
        std::thread::sleep(std::time::Duration::from_millis(20));
        image::RgbImage::from_pixel(30, 30, image::Rgb([1, 2, 3]))
            .save(&samples[0].path)
            .unwrap();
        let (changed, fourth) = preprocess(&samples, FaceMode::AsIs, &options, None, &bar).unwrap();
        assert_eq!((fourth.processed, fourth.cached), (1, 4));
        let chip = image::open(&changed[0].path).unwrap().to_rgb8();
        assert_eq!(chip.get_pixel(0, 0).0, [1, 2, 3]);
    }

    #[test]
    fn missing_and_corrupt_images_are_named_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        write_png(&good, 10);
        let corrupt = dir.path().join("corrupt.jpg");
        fs::write(&corrupt, b"\xff\xd8 not really").unwrap();
        let samples: Vec<Sample> = [good, dir.path().join("missing.png"), corrupt]
            .into_iter()
            .map(|path| Sample {
                path,
                mu: 20.0,
                sigma: 1.0,
            })
            .collect();
        let mut options = PreprocessOptions {
            cache: dir.path().join("cache"),
            size: 8,
            multiple_faces: MultipleFaces::Skip,
            skip_unreadable: false,
        };
        let bar = ProgressBar::hidden();
        let message = format!(
            "{:#}",
            preprocess(&samples, FaceMode::AsIs, &options, None, &bar).unwrap_err()
        );
        assert!(message.contains("missing.png is missing"), "{message}");
        assert!(
            message.contains("2 of 3 images could not be read"),
            "{message}"
        );
        options.skip_unreadable = true;
        let (chips, report) = preprocess(&samples, FaceMode::AsIs, &options, None, &bar).unwrap();
        assert_eq!((chips.len(), report.unreadable), (1, 2));
        // Aligning needs the detector.
        assert!(preprocess(&samples, FaceMode::Align, &options, None, &bar).is_err());
    }
}
