//! `trainer bench`: training and inference throughput of each stream on a device.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use dldl::networks::vgg::Architecture;

use crate::{cli::args::DeviceArg, device, files, progress, train::bench};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Streams to measure (repeat; default: all).
    #[arg(long = "arch")]
    pub architectures: Vec<Architecture>,
    #[arg(long, default_value_t = 224)]
    pub input_size: usize,
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Timed steps per stream (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let (device, device_name) = device::select(args.device.choice)?;
    let architectures = if args.architectures.is_empty() {
        Architecture::ALL.to_vec()
    } else {
        args.architectures
    };
    let bar = progress::bar(args.json, "bench   [{bar:30}] {pos}/{len} steps {eta}");
    let report = bench::run(
        &architectures,
        args.input_size,
        args.batch_size,
        args.steps,
        &device,
        &device_name,
        &bar,
    )?;
    bar.finish_and_clear();
    let table = bench::markdown(&report);
    if let Some(path) = &args.markdown {
        files::write(path, table.as_bytes())?;
    }
    if args.json {
        // One line, for scripts.
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}
