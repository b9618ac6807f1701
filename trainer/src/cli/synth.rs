//! `trainer synth`: the synthetic set, drawn faces whose traits encode their age.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{data::synth, progress};

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Folder to write images/, train.csv, valid.csv, test.csv and dataset.json into.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 3000)]
    pub train: usize,
    #[arg(long, default_value_t = 500)]
    pub valid: usize,
    #[arg(long, default_value_t = 500)]
    pub test: usize,
    /// Side of the square images in pixels.
    #[arg(long, default_value_t = 64)]
    pub image_size: u32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print nothing but errors.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let config = synth::SynthConfig {
        train: args.train,
        valid: args.valid,
        test: args.test,
        image_size: args.image_size,
        seed: args.seed,
    };
    if !(32..=1024).contains(&args.image_size) {
        anyhow::bail!(
            "--image-size must be 32 to 1024 pixels, not {}",
            args.image_size
        );
    }
    let bar = progress::bar(args.quiet, "synth [{bar:30}] {pos}/{len} faces {eta}");
    synth::write_dataset(&args.out, &config, &bar)?;
    bar.finish_and_clear();
    if !args.quiet {
        eprintln!(
            "wrote {} faces to {}",
            config.train + config.valid + config.test,
            args.out.display()
        );
    }
    Ok(())
}
