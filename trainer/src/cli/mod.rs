//! The command line: one file per subcommand, holding its clap arguments and what it runs, and
//! the argument groups several share ([`args`]).

pub mod args;
pub mod average;
pub mod bench;
pub mod distill;
pub mod eval;
pub mod export;
pub mod fuse;
pub mod predict;
pub mod synth;
pub mod train;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::device::DeviceChoice;

/// Train and evaluate deep-label-distribution-learning age networks.
///
/// A quick start on the synthetic set:
///
///   trainer synth --out data/synth
///
///   trainer train --train data/synth/train.csv --valid data/synth/valid.csv --out runs/tiny
///
///   trainer eval --model runs/tiny --data data/synth/test.csv
///
/// Ages of the faces in photographs, with the pretrained stream (after `cargo xtask fetch-models`):
///
///   trainer predict photo.jpg --out annotated/
#[derive(Debug, Parser)]
#[command(version, about, long_about, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the synthetic data set: drawn faces whose traits encode their age.
    Synth(synth::SynthArgs),
    /// Train one stream on a `path,mean[,std]` CSV, or run the stages of a pipeline file
    /// (--config); checkpoints after every epoch, resumable.
    Train(Box<train::TrainArgs>),
    /// Fit the fusion weights of trained streams on a validation set (minimising ε).
    Fuse(fuse::FuseArgs),
    /// Write a trained stream where the demo picks it up (f16 where it changes nothing).
    Export(export::ExportArgs),
    /// Average streams of one network fine-tuned from the same start into one stream.
    Average(average::AverageArgs),
    /// Measure training and inference throughput of each stream on a device.
    Bench(bench::BenchArgs),
    /// Train a student stream on unlabelled face photos, towards the pretrained network's
    /// distributions.
    Distill(Box<distill::DistillArgs>),
    /// Evaluate a trained stream on a `path,mean[,std]` CSV: MAE, ε-error, CS@1..10.
    Eval(eval::EvalArgs),
    /// Find the faces in photographs and estimate each one's age distribution.
    Predict(predict::PredictArgs),
}

impl Command {
    /// The device the command was told to use, if any.
    fn device(&self) -> Option<DeviceChoice> {
        match self {
            Command::Synth(_) => None,
            Command::Train(args) => Some(args.run.device.choice),
            Command::Eval(args) => Some(args.run.device.choice),
            Command::Predict(args) => Some(args.device.choice),
            Command::Fuse(args) => Some(args.run.device.choice),
            Command::Export(args) => Some(args.device.choice),
            Command::Average(args) => Some(args.device.choice),
            Command::Distill(args) => Some(args.run.device.choice),
            Command::Bench(args) => Some(args.device.choice),
        }
    }
}

/// burn puts some state on its default device (an optimiser's state read from a checkpoint, until
/// its first step), and with the `wgpu` feature that default is a GPU adapter, started for
/// nothing on a CPU run. Pointing `BURN_DEVICE` at the chosen backend keeps a run on one device.
/// `auto` leaves burn's own order, which matches it.
#[allow(unsafe_code)]
fn pin_default_device(choice: Option<DeviceChoice>) {
    let name = match choice {
        Some(DeviceChoice::Cpu) => "flex",
        Some(DeviceChoice::Wgpu) => "wgpu",
        Some(DeviceChoice::Cuda) if cfg!(feature = "cuda") => "cuda",
        Some(DeviceChoice::Ndarray) if cfg!(feature = "ndarray") => "ndarray",
        // Without CUDA (or ndarray) built in, `--device cuda` fails with its own message.
        Some(DeviceChoice::Cuda | DeviceChoice::Ndarray | DeviceChoice::Auto) | None => return,
    };
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: called first thing after parsing the command line (`main` → `run`), before any
        // thread exists, so nothing can read
        // the environment while it changes.
        unsafe { std::env::set_var("BURN_DEVICE", name) };
    }
}

/// Runs a parsed command line; returns the process's exit status. An error is printed as one
/// line: what failed and why, outermost first.
pub fn run(cli: Cli) -> i32 {
    pin_default_device(cli.command.device());
    let result = match cli.command {
        Command::Synth(args) => synth::run(args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Fuse(args) => fuse::run(args),
        Command::Export(args) => export::run(args),
        Command::Average(args) => average::run(args),
        Command::Distill(args) => distill::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Predict(args) => match predict::run(args) {
            Ok(true) => Ok(()),
            // Each failed image has had its line; the status says that some failed.
            Ok(false) => return 1,
            Err(error) => Err(error),
        },
    }
    .context("trainer failed");
    match result {
        Ok(()) => 0,
        Err(error) => {
            let line = crate::progress::one_line(error.chain().skip(1).map(|e| e.to_string()));
            eprintln!("error: {line}");
            1
        }
    }
}
