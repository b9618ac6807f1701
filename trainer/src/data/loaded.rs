//! A set ready for training or evaluation: its images at the network's input size (in memory,
//! or chips in the cache read per batch) with their labels.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use indicatif::ProgressBar;
use rayon::prelude::*;

use crate::data::{
    Sample,
    formats::csv::read_csv,
    images::{decode_image, load_image},
};

/// The largest batch accepted from flags and pipelines, checked before anything is allocated
/// for it.
pub const MAX_BATCH_SIZE: usize = 4096;

/// Checks a batch size from a flag or a pipeline against 1..=[`MAX_BATCH_SIZE`].
pub fn check_batch_size(batch_size: usize) -> Result<()> {
    if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
        bail!(
            "the batch size (--batch-size, batch_size) must be 1 to {MAX_BATCH_SIZE}, not {batch_size}"
        );
    }
    Ok(())
}

/// Where a set's images at the network's input size live.
#[derive(Debug, Clone)]
pub enum Images {
    /// Decoded, in memory.
    Memory(Vec<Vec<u8>>),
    /// Chips in the preprocessing cache, decoded when a batch needs them (sets too large to
    /// hold in memory).
    Disk(Vec<PathBuf>),
}

/// A data set at the network's input size.
#[derive(Debug, Clone)]
pub struct LoadedSet {
    pub images: Images,
    /// Target distributions (101 bins) to train towards instead of N(μ, σ): a teacher's, when
    /// distilling.
    pub targets: Option<Vec<Vec<f32>>>,
    pub mu: Vec<f32>,
    pub sigma: Vec<f32>,
    pub size: usize,
    /// Rows whose image could not be read and were skipped.
    pub skipped: usize,
}

impl LoadedSet {
    pub fn len(&self) -> usize {
        self.mu.len()
    }

    /// The `i`-th image's interleaved RGB pixels.
    pub fn pixels(&self, i: usize) -> Result<std::borrow::Cow<'_, [u8]>> {
        match &self.images {
            Images::Memory(images) => Ok(std::borrow::Cow::Borrowed(&images[i])),
            Images::Disk(paths) => {
                let rgb = decode_image(&paths[i])?.to_rgb8();
                if rgb.dimensions() != (self.size as u32, self.size as u32) {
                    bail!(
                        "the cached chip {} is {}×{}, not {s}×{s}; delete the cache folder",
                        paths[i].display(),
                        rgb.width(),
                        rgb.height(),
                        s = self.size
                    );
                }
                Ok(std::borrow::Cow::Owned(rgb.into_raw()))
            }
        }
    }

    /// Loads preprocessed chips: into memory when they take at most `memory_limit` bytes,
    /// else they stay on disk and are read batch by batch.
    pub fn from_chips(
        chips: &[crate::data::chips::Chip],
        size: usize,
        memory_limit: usize,
        progress: &ProgressBar,
    ) -> Result<Self> {
        if chips.is_empty() {
            bail!("no images are left to train on");
        }
        let mu = chips.iter().map(|c| c.mu).collect();
        let sigma = chips.iter().map(|c| c.sigma).collect();
        let paths: Vec<PathBuf> = chips.iter().map(|c| c.path.clone()).collect();
        let disk = LoadedSet {
            images: Images::Disk(paths),
            targets: None,
            mu,
            sigma,
            size,
            skipped: 0,
        };
        if chips.len().saturating_mul(size * size * 3) > memory_limit {
            return Ok(disk);
        }
        progress.set_length(chips.len() as u64);
        let images = (0..chips.len())
            .into_par_iter()
            .map(|i| {
                let pixels = disk.pixels(i).map(|p| p.into_owned());
                progress.inc(1);
                pixels
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(LoadedSet {
            images: Images::Memory(images),
            ..disk
        })
    }

    /// Loads every sample's image in parallel. Unreadable images are an error naming the first
    /// of them, unless `skip_unreadable`, when they are counted and left out.
    pub fn load(
        samples: &[Sample],
        size: usize,
        skip_unreadable: bool,
        progress: &ProgressBar,
    ) -> Result<Self> {
        progress.set_length(samples.len() as u64);
        let results: Vec<(usize, Result<Vec<u8>>)> = samples
            .par_iter()
            .enumerate()
            .map(|(i, sample)| {
                let image = load_image(&sample.path, size as u32);
                progress.inc(1);
                (i, image)
            })
            .collect();
        let failures = results.iter().filter(|(_, r)| r.is_err()).count();
        if failures > 0 && !skip_unreadable {
            let (_, first) = results
                .into_iter()
                .find(|(_, r)| r.is_err())
                .expect("a failure was counted");
            let error = first.expect_err("a failure was counted");
            return Err(error.context(format!(
                "{failures} of {} images could not be read; fix or remove their rows, \
                 or pass --skip-unreadable to leave them out",
                samples.len()
            )));
        }
        let mut images = Vec::new();
        let mut set = LoadedSet {
            images: Images::Memory(Vec::new()),
            targets: None,
            mu: Vec::new(),
            sigma: Vec::new(),
            size,
            skipped: failures,
        };
        for (i, result) in results {
            if let Ok(rgb) = result {
                images.push(rgb);
                set.mu.push(samples[i].mu);
                set.sigma.push(samples[i].sigma);
            }
        }
        set.images = Images::Memory(images);
        if set.is_empty() {
            bail!("none of the {} images could be read", samples.len());
        }
        Ok(set)
    }

    /// Reads the CSV at `csv` and loads its images at `size`, with a progress bar named `what`
    /// unless `quiet`, and says how many unreadable rows were left out.
    pub fn from_csv(
        csv: &Path,
        default_sigma: f32,
        size: usize,
        skip_unreadable: bool,
        quiet: bool,
        what: &str,
    ) -> Result<Self> {
        let samples = read_csv(csv, default_sigma.into())?;
        let progress = crate::progress::bar(
            quiet,
            &format!("loading {what:<5} [{{bar:30}}] {{pos}}/{{len}} images {{eta}}"),
        );
        let set = Self::load(&samples, size, skip_unreadable, &progress)?;
        progress.finish_and_clear();
        if set.skipped > 0 && !quiet {
            eprintln!(
                "{what}: skipped {} unreadable images of {}",
                set.skipped,
                samples.len()
            );
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.mu.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn csv(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("set.csv");
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn reads_rows_with_and_without_std() {
        let dir = tempfile::tempdir().unwrap();
        let path = csv(
            dir.path(),
            "path,mean,std\na.png,30.5,4\nb.png,7\n\nsub/c.png,99,\n",
        );
        let samples = read_csv(&path, 2.5.into()).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].path, dir.path().join("a.png"));
        assert_eq!((samples[0].mu, samples[0].sigma), (30.5, 4.0));
        assert_eq!(samples[1].sigma, 2.5);
        assert_eq!(samples[2].sigma, 2.5);
    }

    #[test]
    fn bad_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for (text, line, needle) in [
            ("path,mean\na.png,thirty\n", 2, "not a number"),
            ("a.png,30,1\nb.png,130,1\n", 2, "outside 0..=100"),
            ("a.png,30,-2\n", 1, "valid standard deviation"),
            ("a.png,30,1,extra\n", 1, "4 fields"),
        ] {
            let path = csv(dir.path(), text);
            let message = format!("{:#}", read_csv(&path, 3.0.into()).unwrap_err());
            assert!(
                message.contains(&format!("set.csv:{line}")) && message.contains(needle),
                "{message}"
            );
        }
    }

    #[test]
    fn unreadable_images_are_reported_or_skipped() {
        let dir = tempfile::tempdir().unwrap();
        image::save_buffer(
            dir.path().join("good.png"),
            &[200u8; 8 * 6 * 3],
            8,
            6,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
        fs::write(dir.path().join("corrupt.png"), b"not a png").unwrap();
        let path = csv(
            dir.path(),
            "good.png,20,2\ncorrupt.png,30,2\nmissing.png,40,2\n",
        );
        let samples = read_csv(&path, 3.0.into()).unwrap();
        let bar = ProgressBar::hidden();
        let error = format!(
            "{:#}",
            LoadedSet::load(&samples, 4, false, &bar).unwrap_err()
        );
        assert!(error.contains("2 of 3 images could not be read"), "{error}");
        assert!(error.contains("corrupt.png"), "{error}");
        let set = LoadedSet::load(&samples, 4, true, &bar).unwrap();
        assert_eq!((set.len(), set.skipped), (1, 2));
        assert_eq!(set.pixels(0).unwrap().len(), 4 * 4 * 3);
        assert_eq!(set.mu, vec![20.0]);
    }
}
