//! Argument groups shared by several subcommands (`#[command(flatten)]`).

use std::path::PathBuf;

use clap::{Args, builder::TypedValueParser};
use dldl::distribution::fusion::FusionRule;

use crate::{artifacts::models::default_models_dir, device::DeviceChoice};

/// Options of every command that reads labelled images and runs a network.
#[derive(Debug, Args)]
pub struct RunOptions {
    /// σ for rows without a std (real-age data).
    #[arg(long, default_value_t = 3.0)]
    pub sigma: f32,
    /// Leave out rows whose image cannot be read, instead of stopping.
    #[arg(long)]
    pub skip_unreadable: bool,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Print the result as JSON on stdout (train: the run's summary; eval: the metrics and
    /// every prediction).
    #[arg(long)]
    pub json: bool,
    /// Print nothing but errors (and --json output).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--device`.
#[derive(Debug, Args)]
pub struct DeviceArg {
    #[arg(long = "device", value_enum, default_value = "auto")]
    pub choice: DeviceChoice,
}

/// `--models`: the model folder.
#[derive(Debug, Args)]
pub struct ModelsArg {
    /// Folder of the model files: age-v1.onnx, blazeface/, the landmark predictor and the
    /// exported streams/ (default: $APPARENT_AGE_MODELS, else the repository's models/).
    #[arg(long = "models")]
    pub folder: Option<PathBuf>,
}

impl ModelsArg {
    /// The folder named, else the default one.
    pub fn folder(self) -> PathBuf {
        self.folder.unwrap_or_else(default_models_dir)
    }
}

/// `--fusion`: how the streams' distributions are combined.
#[derive(Debug, Args)]
pub struct FusionArg {
    /// How the streams' distributions are combined: arithmetic (their weighted mean) or
    /// geometric (their normalised weighted geometric mean, which favours the ages they agree on).
    #[arg(
        long = "fusion",
        default_value = "arithmetic",
        value_parser = clap::builder::PossibleValuesParser::new(FusionRule::NAMES)
            .map(|name| name.parse::<FusionRule>().expect("one of FusionRule::NAMES")),
    )]
    pub rule: FusionRule,
}

/// The training loop's settings that `train` and `distill` share.
#[derive(Debug, Args)]
pub struct LoopArgs {
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub learning_rate: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many epochs in this invocation; the same command continues later
    /// (`train` with --resume).
    #[arg(long)]
    pub stop_after: Option<usize>,
}
