//! `trainer export`: writes a trained stream where the demo (and `trainer predict --models`)
//! picks it up: `<models>/streams/<name>/{stream.json, weights.bpk}`, listed in
//! `<models>/streams/index.json`. Weights are stored as f16 when that moves no probe image's
//! E[age] by 0.01 year or more, else as f32.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use dldl::{
    burn::tensor::Device,
    distribution::expected_ages,
    networks::preprocess::images_to_tensor,
    networks::vgg::AgeNet,
    weights::exported::{self, ExportedStream, Precision, StreamIndex},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::{
    artifacts::{card, models},
    device, files,
};

/// Largest change of E[age] f16 storage may cause, in years.
pub const F16_TOLERANCE: f32 = 0.01;

#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub model: PathBuf,
    pub models: PathBuf,
    pub name: String,
    pub force_f32: bool,
    pub allow_synthetic: bool,
    pub weight: f32,
    /// The published network's fusion weight, written into the index when given.
    pub pretrained_weight: Option<f32>,
    /// The stream's logits are divided by this (a calibration fitted on validation; 1: none).
    pub temperature: f32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub folder: PathBuf,
    pub precision: Precision,
    pub max_expected_age_change_f16: f32,
    pub weights_bytes: u64,
    pub f32_bytes: u64,
}

/// Smooth random colour fields with noise, at the network's input size: enough to see how far
/// f16 storage moves the outputs.
fn probe_images(size: usize, count: usize) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    (0..count)
        .map(|_| {
            let base: [f32; 3] = std::array::from_fn(|_| rng.random_range(40.0..220.0));
            let slope: [f32; 6] = std::array::from_fn(|_| rng.random_range(-1.5..1.5));
            let mut image = Vec::with_capacity(size * size * 3);
            for y in 0..size {
                for x in 0..size {
                    let (u, v) = (x as f32 / size as f32 - 0.5, y as f32 / size as f32 - 0.5);
                    for c in 0..3 {
                        let value = base[c]
                            + 80.0 * (slope[2 * c] * u + slope[2 * c + 1] * v)
                            + rng.random_range(-12.0..12.0);
                        image.push(value.clamp(0.0, 255.0) as u8);
                    }
                }
            }
            image
        })
        .collect()
}

fn expected(
    model: &AgeNet,
    images: &[Vec<u8>],
    config: &dldl::networks::vgg::AgeNetConfig,
    device: &Device,
) -> Result<Vec<f32>> {
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let x = images_to_tensor(&refs, config.input_size, &config.normalization, device);
    device::values(expected_ages(model.distribution(x)), device)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn export(options: &ExportOptions, device: &Device) -> Result<ExportReport> {
    if !(options.weight.is_finite() && options.weight >= 0.0) {
        bail!(
            "the fusion weight (--weight, or the one in --fusion's file) must be a number of 0 or \
             more, not {}",
            options.weight
        );
    }
    if !valid_name(&options.name) {
        bail!(
            "--name `{}`: use letters, digits, `-` and `_` only",
            options.name
        );
    }
    if !(options.temperature.is_finite() && options.temperature > 0.0) {
        bail!(
            "the temperature (from --fusion's file) must be a number above 0, not {}",
            options.temperature
        );
    }
    let mut loaded = card::load_model(&options.model, device)?;
    if options.temperature != 1.0 {
        loaded.model = loaded.model.with_temperature(options.temperature);
    }
    let synthetic = loaded.card.data.kind == "synthetic";
    if synthetic && !options.allow_synthetic {
        bail!(
            "{} was trained on the synthetic set, whose faces are drawings: its estimates on \
             photographs mean nothing, so it is not exported for the demo (tests may pass \
             --allow-synthetic with a temporary --models folder)",
            options.model.display()
        );
    }
    // The folder the demo page serves (trunk copies the repository's models/), and the one
    // `trainer predict` reads by default.
    let served = [
        crate::crate_dir().join("../models"),
        models::default_models_dir(),
    ];
    let target = std::fs::canonicalize(&options.models).ok();
    if synthetic
        && target.is_some()
        && served
            .iter()
            .any(|dir| std::fs::canonicalize(dir).ok() == target)
    {
        bail!("a stream trained on the synthetic set never goes into the demo's model folder");
    }
    let config = loaded.card.model.clone();
    let probes = probe_images(config.input_size, 32);
    let reference = expected(&loaded.model, &probes, &config, device)?;
    let f32_bytes = exported::weights_bytes(loaded.model.clone())?;
    let half_bytes = exported::weights_bytes(exported::to_half(loaded.model.clone()))?;
    let mut card = ExportedStream {
        format: exported::FORMAT.to_string(),
        name: options.name.clone(),
        model: config.clone(),
        precision: Precision::F16,
        max_expected_age_change: 0.0,
        data: loaded.card.data.kind.clone(),
        description: format!(
            "{} ({} px, {} parameters), {} loss, trained on {}",
            config.architecture,
            config.input_size,
            loaded.card.parameters,
            loaded.card.loss,
            loaded.card.data.train.join(" + ")
        ) + &if options.temperature == 1.0 {
            String::new()
        } else {
            format!(
                "; logits ÷ {:.2} (temperature fitted on validation for an honest spread)",
                options.temperature
            )
        },
        validation: loaded.card.validation.clone(),
        weight: options.weight,
        weights_bytes: Some(half_bytes.len() as u64),
    };
    // Reload the f16 bytes exactly as the demo will, and compare.
    let reloaded = exported::load_stream(&card, half_bytes.clone(), device)?;
    let change = expected(&reloaded, &probes, &config, device)?
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    let use_half = !options.force_f32 && change < F16_TOLERANCE;
    let weights = if use_half {
        card.max_expected_age_change = change;
        half_bytes
    } else {
        card.precision = Precision::F32;
        card.weights_bytes = Some(f32_bytes.len() as u64);
        f32_bytes.clone()
    };
    let streams = options.models.join(exported::STREAMS_DIR);
    let folder = streams.join(&options.name);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    files::write(&folder.join(exported::WEIGHTS_FILE), &weights)?;
    files::write(
        &folder.join(exported::CARD_FILE),
        &serde_json::to_vec_pretty(&card)?,
    )?;
    let index_path = streams.join(exported::INDEX_FILE);
    let mut index: StreamIndex = match std::fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; delete it and export again",
                index_path.display()
            )
        })?,
        Err(_) => StreamIndex::default(),
    };
    if !index.streams.contains(&options.name) {
        index.streams.push(options.name.clone());
    }
    if options.pretrained_weight.is_some() {
        index.pretrained_weight = options.pretrained_weight;
    }
    files::write(&index_path, &serde_json::to_vec_pretty(&index)?)?;
    Ok(ExportReport {
        folder,
        precision: card.precision,
        max_expected_age_change_f16: change,
        weights_bytes: weights.len() as u64,
        f32_bytes: f32_bytes.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::card::{CARD_FILE, DataCard, ModelCard, TrainingCard, WEIGHTS_FILE};
    use crate::artifacts::models::load_exported;
    use dldl::{
        burn::module::Module,
        distribution::loss::LossKind,
        networks::vgg::{AgeNetConfig, Architecture},
    };
    use std::path::Path;

    /// A run folder holding an untrained ThinAgeNet (random weights are as good as trained ones
    /// for checking storage precision).
    fn run_folder(dir: &Path, kind: &str) -> PathBuf {
        let device = Device::flex();
        device.seed(3);
        let config = AgeNetConfig::new(Architecture::TinyAgeNet).with_input_size(32);
        let model = config.init(&device).unwrap();
        let run = dir.join(format!("run-{kind}"));
        std::fs::create_dir_all(&run).unwrap();
        let card = ModelCard::new(
            config,
            model.trainable_params(),
            LossKind::Kl,
            DataCard {
                kind: kind.to_string(),
                train: vec!["csv train.csv".to_string()],
                train_images: 10,
                train_mean_age: 30.0,
                valid: Vec::new(),
                valid_images: 0,
            },
            TrainingCard {
                epochs: 1,
                batch_size: 1,
                optimizer: "Adam".to_string(),
                learning_rate: 1e-3,
                lr_step_epochs: 0,
                lr_gamma: 0.1,
                augmentation: "none".to_string(),
                seed: 3,
                device: "cpu".to_string(),
                seconds: 0.0,
            },
            None,
        );
        model.into_record().save(run.join(WEIGHTS_FILE)).unwrap();
        std::fs::write(run.join(CARD_FILE), serde_json::to_vec(&card).unwrap()).unwrap();
        run
    }

    fn options(run: &Path, models: &Path, name: &str, force_f32: bool) -> ExportOptions {
        ExportOptions {
            model: run.to_path_buf(),
            models: models.to_path_buf(),
            name: name.to_string(),
            force_f32,
            allow_synthetic: false,
            weight: 0.5,
            pretrained_weight: None,
            temperature: 1.0,
        }
    }

    #[test]
    fn export_then_reload_gives_the_same_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let run = run_folder(dir.path(), "user");
        let models = dir.path().join("models");
        let original = card::load_model(&run, &device).unwrap();
        let probes = probe_images(32, 8);
        let config = original.card.model.clone();
        let reference = expected(&original.model, &probes, &config, &device).unwrap();

        let f32_report = export(&options(&run, &models, "exact", true), &device).unwrap();
        let half_report = export(&options(&run, &models, "half", false), &device).unwrap();
        assert_eq!(f32_report.precision, Precision::F32);
        assert_eq!(half_report.precision, Precision::F16);
        assert!(half_report.weights_bytes * 10 < f32_report.weights_bytes * 6);

        let loaded = load_exported(&models, &device).unwrap();
        let names: Vec<&str> = loaded.iter().map(|(c, _)| c.name.as_str()).collect();
        assert_eq!(names, ["exact", "half"]);
        assert_eq!(loaded[0].0.weight, 0.5);
        // f32: bit for bit; f16: within the tolerance.
        assert_eq!(
            expected(&loaded[0].1, &probes, &config, &device).unwrap(),
            reference
        );
        let half = expected(&loaded[1].1, &probes, &config, &device).unwrap();
        let change = half
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(change < F16_TOLERANCE, "{change}");
        // Exporting again replaces the stream without listing it twice.
        export(&options(&run, &models, "half", false), &device).unwrap();
        assert_eq!(load_exported(&models, &device).unwrap().len(), 2);
    }

    #[test]
    fn synthetic_streams_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::flex();
        let run = run_folder(dir.path(), "synthetic");
        let models = dir.path().join("models");
        let message = format!(
            "{:#}",
            export(&options(&run, &models, "s", false), &device).unwrap_err()
        );
        assert!(message.contains("synthetic"), "{message}");
        let mut allowed = options(&run, &models, "s", false);
        allowed.allow_synthetic = true;
        export(&allowed, &device).unwrap();
        // Damaged weights: one clear error naming the stream.
        std::fs::write(models.join("streams/s/weights.bpk"), b"garbage").unwrap();
        let message = format!("{:#}", load_exported(&models, &device).unwrap_err());
        assert!(message.contains("`s`"), "{message}");
        assert!(export(&options(&run, &models, "bad name", false), &device).is_err());
    }
}
