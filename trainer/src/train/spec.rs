//! What a training run is: its stream, data, loss, optimiser, schedule and augmentation
//! ([`RunSpec`], stored in every checkpoint and model card), and how this invocation runs it
//! ([`TrainOptions`]).

use std::path::PathBuf;

use anyhow::{Result, bail};
use dldl::{
    burn::optim::{
        AdamConfig, ModuleOptimizer, SgdConfig, decay::WeightDecayConfig, momentum::MomentumConfig,
    },
    burn::tensor::Device,
    distribution::loss::LossKind,
    networks::vgg::{AgeNetConfig, Architecture},
};
use serde::{Deserialize, Serialize};

use crate::{
    artifacts::models,
    data::{
        augment::Augmentation,
        chips::MultipleFaces,
        load::{DEFAULT_MEMORY_LIMIT, LoadOptions},
        loaded::check_batch_size,
        sets::DatasetSpec,
    },
};

/// The optimiser and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSpec {
    #[serde(default)]
    pub kind: OptimizerKind,
    pub learning_rate: f64,
    /// SGD's momentum (ignored by Adam).
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// L2 penalty; 0 is none.
    #[serde(default)]
    pub weight_decay: f32,
}

fn default_momentum() -> f64 {
    0.9
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam, β = (0.9, 0.999).
    #[default]
    Adam,
    /// Stochastic gradient descent with momentum.
    Sgd,
}

impl OptimizerSpec {
    pub fn adam(learning_rate: f64) -> Self {
        OptimizerSpec {
            kind: OptimizerKind::Adam,
            learning_rate,
            momentum: default_momentum(),
            weight_decay: 0.0,
        }
    }

    pub fn init(&self) -> ModuleOptimizer {
        let decay = (self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay));
        match self.kind {
            OptimizerKind::Adam => AdamConfig::new().with_weight_decay(decay).init(),
            OptimizerKind::Sgd => SgdConfig::new()
                .with_weight_decay(decay)
                .with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(self.momentum)
                        .with_dampening(0.0),
                ))
                .init(),
        }
    }

    pub fn describe(&self) -> String {
        let decay = if self.weight_decay > 0.0 {
            format!(", weight decay {}", self.weight_decay)
        } else {
            String::new()
        };
        match self.kind {
            OptimizerKind::Adam => format!("Adam (β = 0.9, 0.999){decay}"),
            OptimizerKind::Sgd => format!("SGD (momentum {}){decay}", self.momentum),
        }
    }
}

/// What a run trains; a resumed run must agree on all of it but the number of epochs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub architecture: Architecture,
    pub input_size: usize,
    pub loss: LossKind,
    pub train: Vec<DatasetSpec>,
    pub valid: Vec<DatasetSpec>,
    pub batch_size: usize,
    pub optimizer: OptimizerSpec,
    pub lr_step_epochs: usize,
    pub lr_gamma: f64,
    pub augment: Augmentation,
    pub multiple_faces: MultipleFaces,
    /// Weights to start from (an earlier stage's), instead of a random initialisation.
    pub init: Option<PathBuf>,
    /// A teacher's distributions for the single training set's rows (101 little-endian f32
    /// per row), trained towards with KL instead of the labels' N(μ, σ).
    #[serde(default)]
    pub soft_targets: Option<PathBuf>,
    pub seed: u64,
}

impl RunSpec {
    /// Checks every number before anything is allocated or read: the network and its input
    /// size, the batch size, the optimiser's settings, the schedule and the augmentation; the
    /// error names the setting as the command line and the pipeline files call it.
    pub fn validate(&self) -> Result<()> {
        AgeNetConfig::for_stream(self.architecture, self.input_size).validate()?;
        check_batch_size(self.batch_size)?;
        let lr = self.optimizer.learning_rate;
        if !(lr.is_finite() && lr > 0.0) {
            bail!(
                "the learning rate (--learning-rate, optimizer.learning_rate) must be a positive number, not {lr}"
            );
        }
        let momentum = self.optimizer.momentum;
        if !(momentum.is_finite() && (0.0..1.0).contains(&momentum)) {
            bail!("optimizer.momentum must be at least 0 and below 1, not {momentum}");
        }
        let decay = self.optimizer.weight_decay;
        if !(decay.is_finite() && decay >= 0.0) {
            bail!("optimizer.weight_decay must be a number of 0 or more, not {decay}");
        }
        if !(self.lr_gamma.is_finite() && self.lr_gamma > 0.0) {
            bail!(
                "the learning-rate factor (--lr-gamma, schedule.gamma) must be a positive number, not {}",
                self.lr_gamma
            );
        }
        self.augment.validate().map_err(anyhow::Error::msg)
    }
}

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub spec: RunSpec,
    pub epochs: usize,
    pub out: PathBuf,
    pub resume: bool,
    pub skip_unreadable: bool,
    pub quiet: bool,
    /// Stop after this many epochs of this invocation (the run stays resumable).
    pub stop_after: Option<usize>,
    /// The preprocessing cache.
    pub cache: PathBuf,
    /// The model folder holding the face detector.
    pub models: PathBuf,
    /// Sets larger than this many bytes at the input size stay on disk.
    pub memory_limit: usize,
    /// Threads preparing batches.
    pub workers: usize,
    /// Devices beside the one `train` is given, for data-parallel steps (`train::parallel`):
    /// each step's batch is split over all of them.
    pub more_devices: Vec<Device>,
}

impl TrainOptions {
    /// What loading this run's sets needs.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            cache: self.cache.clone(),
            models: self.models.clone(),
            multiple_faces: self.spec.multiple_faces,
            skip_unreadable: self.skip_unreadable,
            memory_limit: self.memory_limit,
            quiet: self.quiet,
        }
    }

    /// Defaults for everything but what is trained and where.
    pub fn new(spec: RunSpec, epochs: usize, out: PathBuf) -> Self {
        TrainOptions {
            spec,
            epochs,
            cache: out.join("cache"),
            out,
            resume: false,
            skip_unreadable: false,
            quiet: true,
            stop_after: None,
            models: models::default_models_dir(),
            memory_limit: DEFAULT_MEMORY_LIMIT,
            workers: crate::data::loader::default_workers(),
            more_devices: Vec::new(),
        }
    }
}

/// The learning rate of `epoch` (0-based): divided by 1/γ every `step` epochs.
pub fn learning_rate(spec: &RunSpec, epoch: usize) -> f64 {
    let base = spec.optimizer.learning_rate;
    match spec.lr_step_epochs {
        0 => base,
        step => base * spec.lr_gamma.powi((epoch / step) as i32),
    }
}
