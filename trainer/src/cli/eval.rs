//! `trainer eval`: a trained stream's metrics on a labelled CSV, and its plots.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::{
    artifacts::card::load_model, cli::args::RunOptions, data::loaded::LoadedSet, device,
    eval::report, progress, render::eval_plots,
};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A folder written by `trainer train`, or its model.json.
    #[arg(long)]
    pub model: PathBuf,
    /// CSV to evaluate on: `path,mean[,std]`.
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Average each image's distribution with its mirror image's (test-time flip).
    #[arg(long)]
    pub flip: bool,
    /// Write the plots here: predicted vs true age, error by age, σ calibration (SVG when the
    /// name ends in .svg, else PNG).
    #[arg(long)]
    pub plots: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let run = &args.run;
    let (device, device_name) = device::select(run.device.choice)?;
    let loaded = load_model(&args.model, &device)?;
    let size = loaded.card.model.input_size;
    let set = LoadedSet::from_csv(
        &args.data,
        run.sigma,
        size,
        run.skip_unreadable,
        run.quiet,
        "eval",
    )?;
    let bar = progress::bar(run.quiet, "eval    [{bar:30}] {pos}/{len} images {eta}");
    let report::Predictions {
        report,
        expected: predictions,
        distributions,
    } = report::evaluate(
        &loaded.model.for_inference(),
        &set,
        &loaded.card.model.normalization,
        args.batch_size,
        args.flip,
        &device,
        &bar,
    )?;
    bar.finish_and_clear();
    let decades = report::per_decade(&predictions, &set.mu);
    if let Some(path) = &args.plots {
        eval_plots::save(path, &set.mu, &predictions, &distributions)?;
        if !run.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    if run.json {
        let json = serde_json::json!({
            "model": args.model,
            "architecture": loaded.card.model.architecture,
            "data": args.data,
            "device": device_name,
            "skipped": set.skipped,
            "flip": args.flip,
            "metrics": report,
            "mae_by_decade": decades,
            "predictions": predictions,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{} ({} px) on {}, {device_name}",
            loaded.card.model.architecture,
            size,
            args.data.display()
        );
        print!("{}", report::table(&report));
        print!("{}", report::decade_table(&decades));
        if set.skipped > 0 {
            println!("skipped  {} unreadable images", set.skipped);
        }
    }
    Ok(())
}
