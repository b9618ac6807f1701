use thiserror::Error;

/// What can be wrong with the inputs to this crate's functions.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum DldlError {
    #[error("age {0} is outside 0..=100 (ages are years on the 0..=100 grid)")]
    AgeOutOfRange(f32),
    #[error("σ = {0} is not a valid standard deviation (it must be finite and ≥ 0)")]
    InvalidSigma(f32),
    #[error("a distribution has {found} bins; the age grid has {expected} (0..=100)")]
    WrongBins { expected: usize, found: usize },
    #[error("a distribution's probabilities must be finite, ≥ 0 and sum to more than 0")]
    InvalidDistribution,
    #[error(
        "unknown architecture `{0}`; choose one of: vgg16, vgg16-bn, thin-age-net, tiny-age-net, pretrained"
    )]
    UnknownArchitecture(String),
    #[error("input size {0} is too small: five 2×2 max-pools need at least 32 pixels")]
    InputTooSmall(usize),
    #[error(
        "input size {0} is too large: the networks take at most {max} pixels a side",
        max = crate::networks::vgg::MAX_INPUT_SIZE
    )]
    InputTooLarge(usize),
    #[error(
        "the pretrained network takes {expected}×{expected} chips, not {found}×{found}: set its input size to {expected}"
    )]
    WrongInputSize { expected: usize, found: usize },
    #[error("fusion needs one weight per stream: {streams} streams, {weights} weights")]
    FusionWeights { streams: usize, weights: usize },
    #[error("fusion weights must be finite, ≥ 0 and not all zero")]
    InvalidFusionWeights,
    #[error("nothing to fuse: no stream distributions were given")]
    NoStreams,
    #[error("unknown loss `{0}`; choose one of: kl, cross-entropy, kl-l1")]
    UnknownLoss(String),
    #[error("the weights file cannot be read: {0}")]
    CorruptWeights(String),
    #[error("the weights do not fit this network: {0}")]
    WeightsMismatch(String),
    #[error("image of {width}×{height} pixels is too small to hold a face")]
    ImageTooSmall { width: u32, height: u32 },
    #[error("the compute backend failed: {0}")]
    Backend(String),
}

impl DldlError {
    pub(crate) fn backend(error: impl std::fmt::Debug) -> Self {
        DldlError::Backend(format!("{error:?}"))
    }
}
