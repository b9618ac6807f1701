//! `trainer train`: one stream from flags, or the stages of a pipeline file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use dldl::{distribution::loss::LossKind, networks::vgg::Architecture};

use crate::{
    cli::args::{LoopArgs, ModelsArg, RunOptions},
    data::{FaceMode, augment::Augmentation, chips::MultipleFaces, sets::DatasetSpec},
    device,
    train::{
        run::train,
        spec::{OptimizerSpec, RunSpec, TrainOptions},
        stages::{self, RunPipeline},
    },
};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A pipeline file (TOML): its stages run in order into --out, each resumable.
    #[arg(long, conflicts_with_all = ["train", "valid"])]
    pub config: Option<PathBuf>,
    /// Training CSV: `path,mean[,std]`, paths relative to the CSV.
    #[arg(long, required_unless_present = "config")]
    pub train: Option<PathBuf>,
    /// Validation CSV, evaluated after every epoch.
    #[arg(long)]
    pub valid: Option<PathBuf>,
    /// Folder for checkpoints, learning curves (training.svg), the final weights (model.bpk)
    /// and the model card (model.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Network: vgg16, vgg16-bn, thin-age-net or tiny-age-net.
    #[arg(long, default_value = "thin-age-net")]
    pub arch: Architecture,
    /// Loss: kl, cross-entropy, or kl-l1[:λ] (DLDL-v2, λ = 1 by default).
    #[arg(long, default_value = "kl")]
    pub loss: LossKind,
    /// Side of the square network input in pixels (≥ 32); images are resized to it.
    #[arg(long, default_value_t = 224)]
    pub input_size: usize,
    #[command(flatten)]
    pub schedule: LoopArgs,
    /// Multiply the learning rate by --lr-gamma every this many epochs (0: never).
    #[arg(long, default_value_t = 0)]
    pub lr_step: usize,
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    /// Do not mirror training images at random.
    #[arg(long)]
    pub no_flip: bool,
    /// Preprocessing cache (default: <out>/cache).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub models: ModelsArg,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Train data-parallel on these devices, comma-separated, all of one kind (each step's
    /// batch is split over them): cpu, wgpu, wgpu:N (the N-th discrete GPU), cuda:N. Replaces
    /// --device; a pipeline file's `devices` key says the same.
    #[arg(long, value_delimiter = ',')]
    pub devices: Vec<String>,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let names = match (&args.config, args.devices.is_empty()) {
        (_, false) => Some(args.devices.clone()),
        (Some(config), true) => stages::load(config)?.devices,
        (None, true) => None,
    };
    let mut devices = match names {
        Some(names) => device::select_many(&names)?,
        None => vec![device::select(args.run.device.choice)?],
    };
    let (device, first_name) = devices.remove(0);
    let device_name = if devices.is_empty() {
        first_name
    } else {
        let names: Vec<&str> = std::iter::once(first_name.as_str())
            .chain(devices.iter().map(|(_, n)| n.as_str()))
            .collect();
        format!(
            "{} devices, data-parallel: {}",
            names.len(),
            names.join(", ")
        )
    };
    let more_devices: Vec<_> = devices.into_iter().map(|(d, _)| d).collect();
    if !args.run.quiet {
        eprintln!("device: {device_name}");
    }
    let models = args.models.folder();
    if let Some(config) = args.config {
        return stages::run(
            &RunPipeline {
                config,
                out: args.out,
                models,
                quiet: args.run.quiet,
                more_devices,
            },
            &device,
            &device_name,
        );
    }
    let train_csv = args.train.context("--train or --config is needed")?;
    let sigma = args.run.sigma;
    let schedule = args.schedule;
    let spec = RunSpec {
        architecture: args.arch,
        input_size: args.input_size,
        loss: args.loss,
        train: vec![DatasetSpec::csv(train_csv, sigma, FaceMode::AsIs)],
        valid: args
            .valid
            .into_iter()
            .map(|v| DatasetSpec::csv(v, sigma, FaceMode::AsIs))
            .collect(),
        batch_size: schedule.batch_size,
        optimizer: OptimizerSpec::adam(schedule.learning_rate),
        lr_step_epochs: args.lr_step,
        lr_gamma: args.lr_gamma,
        augment: Augmentation {
            flip: !args.no_flip,
            ..Augmentation::default()
        },
        multiple_faces: MultipleFaces::Skip,
        init: None,
        soft_targets: None,
        seed: schedule.seed,
    };
    let options = TrainOptions {
        resume: args.resume,
        skip_unreadable: args.run.skip_unreadable,
        quiet: args.run.quiet,
        stop_after: schedule.stop_after,
        cache: args.cache.unwrap_or_else(|| args.out.join("cache")),
        models,
        more_devices,
        ..TrainOptions::new(spec, schedule.epochs, args.out)
    };
    let summary = train(&options, &device, &device_name)?;
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
