//! The model card written beside a stream's weights, and loading a stream from it.

use std::path::Path;

use anyhow::{Context, Result};
use dldl::{
    AGE_BINS, MAX_AGE,
    burn::{module::Module, store::ModuleRecord, tensor::Device},
    distribution::loss::LossKind,
    distribution::metrics::MetricsReport,
    networks::vgg::{AgeNet, AgeNetConfig},
};
use serde::{Deserialize, Serialize};

pub const CARD_FILE: &str = "model.json";
pub const WEIGHTS_FILE: &str = "model.bpk";
/// Version 2: the networks' weights are stored under their kind (`Vgg.` or `Pretrained.`).
const FORMAT: &str = "apparent-age model card 2";

/// At most this much of a weights-mismatch message from burn (which lists every tensor).
const DETAIL_CHARS: usize = 240;

/// `text`, cut to [`DETAIL_CHARS`] characters with an ellipsis.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Everything needed to use, and judge, a trained stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    /// The network, its input size and its input normalisation.
    pub model: AgeNetConfig,
    pub bins: Bins,
    /// What the network outputs.
    pub output: String,
    /// The weights file, relative to the card.
    pub weights: String,
    pub parameters: usize,
    pub loss: LossKind,
    pub data: DataCard,
    pub training: TrainingCard,
    /// Metrics on the validation set after the last epoch.
    pub validation: Option<MetricsReport>,
    pub created_by: String,
    /// For a stream averaged from others (`trainer average`): their folders. The rest of the
    /// card is the first one's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub averaged_from: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bins {
    pub first_age: usize,
    pub last_age: usize,
    pub count: usize,
}

impl Bins {
    pub fn age_grid() -> Self {
        Bins {
            first_age: 0,
            last_age: MAX_AGE,
            count: AGE_BINS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataCard {
    /// `synthetic` when any training set is `trainer synth` output, else `user`.
    pub kind: String,
    /// The training sets, each as `format path`.
    pub train: Vec<String>,
    pub train_images: usize,
    pub train_mean_age: f32,
    pub valid: Vec<String>,
    pub valid_images: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingCard {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: String,
    pub learning_rate: f64,
    pub lr_step_epochs: usize,
    pub lr_gamma: f64,
    pub augmentation: String,
    pub seed: u64,
    pub device: String,
    pub seconds: f64,
}

impl ModelCard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        model: AgeNetConfig,
        parameters: usize,
        loss: LossKind,
        data: DataCard,
        training: TrainingCard,
        validation: Option<MetricsReport>,
    ) -> Self {
        ModelCard {
            format: FORMAT.to_string(),
            model,
            bins: Bins::age_grid(),
            output: "logits over the ages 0..=100; their softmax is p(age), E[age] the estimate"
                .to_string(),
            weights: WEIGHTS_FILE.to_string(),
            parameters,
            loss,
            data,
            training,
            validation,
            created_by: format!("trainer {}", env!("CARGO_PKG_VERSION")),
            averaged_from: None,
        }
    }
}

/// A stream loaded from its card and weights.
#[derive(Debug)]
pub struct LoadedModel {
    pub card: ModelCard,
    pub model: AgeNet,
}

/// Loads a stream from a run folder or a card file.
pub fn load_model(path: &Path, device: &Device) -> Result<LoadedModel> {
    let card_path = if path.is_dir() {
        path.join(CARD_FILE)
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&card_path).with_context(|| {
        format!(
            "cannot read the model card {} (pass the folder `trainer train --out` wrote)",
            card_path.display()
        )
    })?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a model card", card_path.display()))?;
    let format = value.get("format").and_then(|f| f.as_str()).unwrap_or("?");
    if format != FORMAT {
        anyhow::bail!(
            "{} is a `{format}`; this trainer reads `{FORMAT}`: train the stream again with this \
             trainer",
            card_path.display()
        );
    }
    // serde quotes what it could not read, line breaks and all.
    let card: ModelCard = serde_json::from_value(value)
        .map_err(|e| anyhow::anyhow!(crate::data::formats::quoted(&e.to_string())))
        .with_context(|| format!("{} is not a model card", card_path.display()))?;
    if card.bins.count != AGE_BINS {
        anyhow::bail!(
            "{} describes {} age bins; this trainer uses {AGE_BINS} (0..=100)",
            card_path.display(),
            card.bins.count
        );
    }
    let weights = card_path
        .parent()
        .unwrap_or(Path::new("."))
        .join(&card.weights);
    let model = load_weights(&card.model, &weights, device)?;
    Ok(LoadedModel { card, model })
}

/// Writes `model`'s weights to `path` (burnpack), whole or not at all.
pub fn save_weights(model: AgeNet, path: &Path) -> Result<()> {
    let record = model.into_record();
    crate::files::write_with(path, |tmp| {
        record
            .save(tmp)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
    })
}

/// Builds the network `config` describes and applies the weights file to it.
pub fn load_weights(config: &AgeNetConfig, weights: &Path, device: &Device) -> Result<AgeNet> {
    let model = config.init(device)?;
    let record = ModuleRecord::load(weights)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot read the weights {}", weights.display()))?;
    let model = model
        .try_load_record(record)
        .map_err(|e| anyhow::anyhow!("{}", shorten(&e.to_string())))
        .with_context(|| {
            format!(
                "the weights {} do not fit a {} ({} px input): they were written for another \
                 network; check the model card beside them",
                weights.display(),
                config.architecture,
                config.input_size
            )
        })?;
    finite(&model, weights)?;
    Ok(model)
}

/// Refuses weights holding a NaN or an infinity (a run that diverged), naming the file.
pub fn finite(model: &AgeNet, weights: &Path) -> Result<()> {
    let (bad, tensors) = dldl::weights::exported::non_finite_parameters(model)
        .with_context(|| format!("cannot read back the weights {}", weights.display()))?;
    if bad > 0 {
        anyhow::bail!(
            "the weights {} hold NaN or infinite values in {bad} of {tensors} tensors: the run \
             diverged; train it again (a lower learning rate), or resume from an earlier \
             checkpoint",
            weights.display()
        );
    }
    Ok(())
}
