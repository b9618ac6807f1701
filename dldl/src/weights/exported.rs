//! Streams exported for the demo: a folder per stream under `streams/` beside the other model
//! files, holding `stream.json` (what the network is and how it was trained) and `weights.bpk`
//! (burnpack, f16 or f32), listed in `streams/index.json`. The trainer writes them
//! (`trainer export`); the demo and `trainer predict` read them with these functions, so a new
//! stream needs no code change.

use burn::{
    module::{Module, ModuleMapper, ModuleVisitor, Param},
    store::ModuleRecord,
    tensor::{DType, Device, Tensor},
};
use serde::{Deserialize, Serialize};

use crate::{
    DldlError,
    distribution::metrics::MetricsReport,
    networks::vgg::{AgeNet, AgeNetConfig},
};

/// The folder of exported streams inside the model folder.
pub const STREAMS_DIR: &str = "streams";
/// The list of exported streams inside [`STREAMS_DIR`].
pub const INDEX_FILE: &str = "index.json";
pub const CARD_FILE: &str = "stream.json";
pub const WEIGHTS_FILE: &str = "weights.bpk";
pub const FORMAT: &str = "apparent-age exported stream 1";

/// `streams/index.json`: the exported streams' folder names, in fusion order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamIndex {
    pub streams: Vec<String>,
    /// The published pretrained network's fusion weight beside these streams (`trainer fuse`
    /// fits it); absent: 1. At 0 it does not run, unless no listed stream loads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained_weight: Option<f32>,
}

impl StreamIndex {
    /// The published network's weight in the fusion: [`published_weight`] of
    /// [`StreamIndex::pretrained_weight`].
    pub fn published_weight(&self) -> f32 {
        published_weight(self.pretrained_weight)
    }
}

/// The published network's weight from an index's `pretrained_weight`: 1 when absent, 0 for a
/// value that is not a finite number of 0 or more.
pub fn published_weight(pretrained_weight: Option<f32>) -> f32 {
    match pretrained_weight {
        None => 1.0,
        Some(w) if w.is_finite() && w >= 0.0 => w,
        Some(_) => 0.0,
    }
}

/// Storage precision of the exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    F16,
    F32,
}

/// `stream.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedStream {
    pub format: String,
    /// Shown on the page and in `trainer predict`.
    pub name: String,
    pub model: AgeNetConfig,
    pub precision: Precision,
    /// Largest change of E[age] the precision made on the export's probe images, in years.
    pub max_expected_age_change: f32,
    /// `synthetic` when trained on the synthetic set (never meaningful on photographs).
    pub data: String,
    /// The training sets and settings in a line or two.
    pub description: String,
    pub validation: Option<MetricsReport>,
    /// Fusion weight (from `trainer fuse` when one was fitted, else 1).
    pub weight: f32,
    /// The size of `weights.bpk` in bytes, so that a file that arrived short is told from a
    /// damaged one (absent in cards written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights_bytes: Option<u64>,
}

struct ToHalf;

impl ModuleMapper for ToHalf {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|t| t.cast(DType::F16))
    }
}

/// How many of `model`'s float parameter tensors hold a NaN or an infinity, of how many (a
/// stream that diverged in training): [`non_finite_parameters_async`], blocking until done, for
/// native callers.
pub fn non_finite_parameters(model: &AgeNet) -> Result<(usize, usize), DldlError> {
    futures_lite::future::block_on(non_finite_parameters_async(model))
}

/// Every float parameter, flattened, to be read back.
#[derive(Default)]
struct Parameters(Vec<Tensor<1>>);

impl ModuleVisitor for Parameters {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.val().flatten::<1>(0, D - 1));
    }
}

/// How many of `model`'s float parameter tensors hold a NaN or an infinity, of how many, each
/// tensor read back asynchronously (the page's way: a GPU tensor cannot be read synchronously in
/// a browser).
pub async fn non_finite_parameters_async(model: &AgeNet) -> Result<(usize, usize), DldlError> {
    let mut parameters = Parameters::default();
    model.visit(&mut parameters);
    let tensors = parameters.0.len();
    let mut bad = 0;
    for tensor in parameters.0 {
        if !crate::read_async(tensor)
            .await?
            .iter()
            .all(|v| v.is_finite())
        {
            bad += 1;
        }
    }
    Ok((bad, tensors))
}

/// The network with every float parameter stored as f16.
pub fn to_half(model: AgeNet) -> AgeNet {
    model.map(&mut ToHalf)
}

/// The burnpack bytes of `model`'s weights.
pub fn weights_bytes(model: AgeNet) -> Result<Vec<u8>, DldlError> {
    model
        .into_record()
        .into_bytes()
        .map(|b| b.to_vec())
        .map_err(|e| DldlError::Backend(e.to_string()))
}

/// Builds the network `card` describes and applies `weights` (f16 or f32) to it in f32.
pub fn load_stream(
    card: &ExportedStream,
    weights: Vec<u8>,
    device: &Device,
) -> Result<AgeNet, DldlError> {
    if card.format != FORMAT {
        return Err(DldlError::WeightsMismatch(format!(
            "stream.json is `{}`, not `{FORMAT}`",
            card.format
        )));
    }
    if !(card.weight.is_finite() && card.weight >= 0.0) {
        return Err(DldlError::WeightsMismatch(format!(
            "{CARD_FILE} gives the fusion weight {}; it must be a number of 0 or more: export \
             the stream again",
            card.weight
        )));
    }
    if let Some(expected) = card.weights_bytes
        && expected != weights.len() as u64
    {
        return Err(DldlError::CorruptWeights(format!(
            "{WEIGHTS_FILE} has {} bytes where {CARD_FILE} says {expected}: it arrived short or \
             belongs to another export",
            weights.len()
        )));
    }
    let model = card.model.init(device)?;
    let record = ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(weights))
        .map_err(|e| DldlError::CorruptWeights(format!("not a burnpack file: {e}")))?
        .cast_to_module_dtype();
    model.try_load_record(record).map_err(|e| {
        // burn lists every tensor; the start says enough.
        let text = e.to_string();
        let short: String = text.chars().take(240).collect();
        DldlError::WeightsMismatch(if short.len() < text.len() {
            format!("{short}…")
        } else {
            text
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::networks::vgg::Architecture;

    struct Poison;

    impl ModuleMapper for Poison {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.mul_scalar(f32::NAN))
        }
    }

    #[test]
    fn weights_with_nan_are_counted() {
        let device = Device::flex();
        let model = AgeNetConfig::new(Architecture::TinyAgeNet)
            .with_input_size(32)
            .init(&device)
            .unwrap();
        let (bad, tensors) = non_finite_parameters(&model).unwrap();
        assert!(tensors > 0);
        assert_eq!(bad, 0);
        let poisoned = model.map(&mut Poison);
        assert_eq!(
            non_finite_parameters(&poisoned).unwrap(),
            (tensors, tensors)
        );
    }
}
