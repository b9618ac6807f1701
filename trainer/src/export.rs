//! `trainer export`: writes a trained stream where the demo (and `trainer predict --models`)
//! picks it up: `<models>/streams/<name>/{stream.json, weights.bpk}`, listed in
//! `<models>/streams/index.json`. Weights are stored as f16 when that moves no probe image's
//! E[age] by 0.01 year or more, else as f32.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dldl::{
    burn::tensor::Device,
    distribution::expected_ages,
    exported::{self, ExportedStream, Precision, StreamIndex},
    model::AgeNet,
    preprocess::images_to_tensor,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde::Serialize;

use crate::{atomic, card};

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
    config: &dldl::model::AgeNetConfig,
    device: &Device,
) -> Vec<f32> {
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    let x = images_to_tensor(&refs, config.input_size, &config.normalization, device);
    expected_ages(model.distribution(x))
        .try_into_vec_as()
        .expect("expectations are readable")
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub fn export(options: &ExportOptions, device: &Device) -> Result<ExportReport> {
    if !valid_name(&options.name) {
        bail!(
            "--name `{}`: use letters, digits, `-` and `_` only",
            options.name
        );
    }
    let loaded = card::load_model(&options.model, device)?;
    let synthetic = loaded.card.data.kind == "synthetic";
    if synthetic && !options.allow_synthetic {
        bail!(
            "{} was trained on the synthetic set, whose faces are drawings: its estimates on \
             photographs mean nothing, so it is not exported for the demo (tests may pass \
             --allow-synthetic with a temporary --models folder)",
            options.model.display()
        );
    }
    let repository_models = crate::predict::default_models_dir();
    if synthetic
        && std::fs::canonicalize(&options.models).ok()
            == std::fs::canonicalize(&repository_models).ok()
    {
        bail!("a stream trained on the synthetic set never goes into the demo's model folder");
    }
    let config = loaded.card.model.clone();
    let probes = probe_images(config.input_size, 32);
    let reference = expected(&loaded.model, &probes, &config, device);
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
        ),
        validation: loaded.card.validation.clone(),
        weight: options.weight,
    };
    // Reload the f16 bytes exactly as the demo will, and compare.
    let reloaded = exported::load_stream(&card, half_bytes.clone(), device)?;
    let change = expected(&reloaded, &probes, &config, device)
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
        f32_bytes.clone()
    };
    let streams = options.models.join(exported::STREAMS_DIR);
    let folder = streams.join(&options.name);
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    atomic::write(&folder.join(exported::WEIGHTS_FILE), &weights)?;
    atomic::write(
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
    atomic::write(&index_path, &serde_json::to_vec_pretty(&index)?)?;
    Ok(ExportReport {
        folder,
        precision: card.precision,
        max_expected_age_change_f16: change,
        weights_bytes: weights.len() as u64,
        f32_bytes: f32_bytes.len() as u64,
    })
}

/// Loads every stream listed in `<models>/streams/index.json` (none when there is no index).
pub fn load_exported(models: &Path, device: &Device) -> Result<Vec<(ExportedStream, AgeNet)>> {
    let streams = models.join(exported::STREAMS_DIR);
    let index_path = streams.join(exported::INDEX_FILE);
    let Ok(bytes) = std::fs::read(&index_path) else {
        return Ok(Vec::new());
    };
    let index: StreamIndex = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is damaged; export the streams again",
            index_path.display()
        )
    })?;
    index
        .streams
        .iter()
        .map(|name| {
            let folder = streams.join(name);
            let card: ExportedStream = serde_json::from_slice(
                &std::fs::read(folder.join(exported::CARD_FILE))
                    .with_context(|| format!("cannot read the exported stream `{name}`"))?,
            )
            .with_context(|| {
                format!("{} is damaged", folder.join(exported::CARD_FILE).display())
            })?;
            let weights = std::fs::read(folder.join(exported::WEIGHTS_FILE))
                .with_context(|| format!("cannot read the weights of `{name}`"))?;
            let model = exported::load_stream(&card, weights, device)
                .with_context(|| format!("the exported stream `{name}`"))?;
            Ok((card, model))
        })
        .collect()
}
