//! `trainer distill`: a student stream trained towards the pretrained network's distributions on
//! unlabelled face photos.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use dldl::{distribution::loss::LossKind, networks::vgg::Architecture};

use crate::{
    cli::args::{LoopArgs, ModelsArg, RunOptions},
    data::{augment::Augmentation, chips::MultipleFaces},
    device,
    train::{
        distill::{DistillOptions, distill},
        spec::{OptimizerSpec, RunSpec, TrainOptions},
    },
};

#[derive(Debug, Args)]
pub struct DistillArgs {
    /// Folder of face photographs (searched recursively; PNG and JPEG).
    #[arg(long)]
    pub images: PathBuf,
    /// Run folder: the teacher's answers, checkpoints and the student.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "tiny-age-net")]
    pub arch: Architecture,
    #[arg(long, default_value_t = 224)]
    pub input_size: usize,
    #[command(flatten)]
    pub schedule: LoopArgs,
    /// Share of the photos held out to validate against the teacher.
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f32,
    /// Photos with several faces: keep the largest (default: leave them out).
    #[arg(long)]
    pub largest_face: bool,
    /// Only mirror the training images (default: DLDL-v2's augmentation).
    #[arg(long)]
    pub flip_only: bool,
    #[command(flatten)]
    pub models: ModelsArg,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(args: DistillArgs) -> Result<()> {
    let (device, device_name) = device::select(args.run.device.choice)?;
    if !args.run.quiet {
        eprintln!("device: {device_name}");
    }
    let multiple_faces = if args.largest_face {
        MultipleFaces::Largest
    } else {
        MultipleFaces::Skip
    };
    let schedule = args.schedule;
    let spec = RunSpec {
        architecture: args.arch,
        input_size: args.input_size,
        loss: LossKind::Kl,
        train: Vec::new(),
        valid: Vec::new(),
        batch_size: schedule.batch_size,
        optimizer: OptimizerSpec::adam(schedule.learning_rate),
        lr_step_epochs: 0,
        lr_gamma: 0.1,
        augment: if args.flip_only {
            Augmentation::default()
        } else {
            Augmentation::dldl_v2()
        },
        multiple_faces,
        init: None,
        soft_targets: None,
        seed: schedule.seed,
    };
    let train = TrainOptions {
        skip_unreadable: args.run.skip_unreadable,
        quiet: args.run.quiet,
        stop_after: schedule.stop_after,
        models: args.models.folder(),
        ..TrainOptions::new(spec, schedule.epochs, args.out)
    };
    let summary = distill(
        &DistillOptions {
            images: args.images,
            valid_fraction: args.valid_fraction,
            multiple_faces,
            train,
        },
        &device,
        &device_name,
    )?;
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}
