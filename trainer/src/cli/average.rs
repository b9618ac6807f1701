//! `trainer average`: streams of one network fine-tuned from the same start, averaged parameter
//! by parameter into one stream of the same size.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{artifacts::average::average_runs, cli::args::DeviceArg, device};

#[derive(Debug, Args)]
pub struct AverageArgs {
    /// Trained streams (folders written by `trainer train`, or their model.json); two or more,
    /// of one network and from the same start (stages with the same `from`).
    #[arg(long = "model", required = true, num_args = 1)]
    pub models: Vec<PathBuf>,
    /// The folder to write the averaged stream into (model.bpk and model.json).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: AverageArgs) -> Result<()> {
    let (device, _) = device::select(args.device.choice)?;
    let card = average_runs(&args.models, &args.out, &device)?;
    eprintln!(
        "wrote the average of {} {} streams to {}; evaluate it (`trainer eval`) before using it",
        args.models.len(),
        card.model.architecture,
        args.out.display()
    );
    Ok(())
}
