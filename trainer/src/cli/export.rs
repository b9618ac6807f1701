//! `trainer export`: a trained stream written where the demo and `predict` pick it up.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    artifacts::export::{ExportOptions, export},
    cli::args::{DeviceArg, ModelsArg},
    device, eval,
};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A trained stream (a `trainer train` folder or its model.json).
    #[arg(long)]
    pub model: PathBuf,
    /// The stream's name on the page (letters, digits, `-`, `_`).
    #[arg(long)]
    pub name: String,
    /// The model folder the demo serves.
    #[command(flatten)]
    pub models: ModelsArg,
    /// Keep f32 weights even where f16 would change nothing.
    #[arg(long)]
    pub f32: bool,
    /// Fusion weight of the stream on the page.
    #[arg(long, default_value_t = 1.0, conflicts_with = "fusion")]
    pub weight: f32,
    /// Take the weight `trainer fuse` fitted for this stream from its fusion.json.
    #[arg(long)]
    pub fusion: Option<PathBuf>,
    /// Export a stream trained on the synthetic set (only for tests, into a temporary folder).
    #[arg(long)]
    pub allow_synthetic: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let (device, _) = device::select(args.device.choice)?;
    let fit = args.fusion.as_deref().map(eval::fusion::load).transpose()?;
    let weight = match (&fit, &args.fusion) {
        (Some(fit), Some(path)) => fit.weight_of(&args.model).with_context(|| {
            format!(
                "{} has no weight for {}",
                path.display(),
                args.model.display()
            )
        })?,
        _ => args.weight,
    };
    // A fusion that weighed the published network sets its weight on the page too.
    let pretrained_weight = fit
        .as_ref()
        .and_then(eval::fusion::FusionFit::published_weight);
    // The fusion's temperature goes into the weights (see `FusionFit::temperature`).
    let temperature = fit.as_ref().map_or(1.0, |fit| fit.temperature);
    let report = export(
        &ExportOptions {
            model: args.model,
            models: args.models.folder(),
            name: args.name,
            force_f32: args.f32,
            allow_synthetic: args.allow_synthetic,
            weight,
            pretrained_weight,
            temperature,
        },
        &device,
    )?;
    println!(
        "wrote {} ({:?}: {:.1} KB; f32 would be {:.1} KB; f16 moves E[age] by at most {:.4} years)",
        report.folder.display(),
        report.precision,
        report.weights_bytes as f64 / 1024.0,
        report.f32_bytes as f64 / 1024.0,
        report.max_expected_age_change_f16
    );
    Ok(())
}
