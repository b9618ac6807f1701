//! `trainer predict`: the faces in photographs and each one's age distribution, with the
//! pretrained stream and any trained streams fused.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::{
    artifacts::models::estimator,
    cli::args::{DeviceArg, FusionArg, ModelsArg},
    device,
    eval::predict::{describe, predict_image},
};

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// Photographs (PNG or JPEG).
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A trained DLDL stream (a `trainer train --out` folder) to fuse with the pretrained one;
    /// repeat for several.
    #[arg(long = "stream")]
    pub streams: Vec<PathBuf>,
    #[command(flatten)]
    pub fusion: FusionArg,
    /// Do not average each stream over the face and its mirror image.
    #[arg(long)]
    pub no_flip: bool,
    #[command(flatten)]
    pub models: ModelsArg,
    /// Write an annotated PNG per image into this folder: boxes, estimates and each face's
    /// distribution.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Returns whether every image could be processed.
pub fn run(args: PredictArgs) -> Result<bool> {
    let (device, device_name) = device::select(args.device.choice)?;
    let models = args.models.folder();
    let (estimator, warnings) = estimator(
        &models,
        &args.streams,
        args.fusion.rule,
        !args.no_flip,
        &device,
    )?;
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    if !args.json {
        eprintln!("device: {device_name}");
    }
    let mut results = Vec::new();
    for image in &args.images {
        let result = predict_image(&estimator, image, args.out.as_deref(), &device);
        if args.json {
            if let Some(error) = &result.error {
                eprintln!("error: {error}");
            }
        } else if result.error.is_some() {
            eprint!("{}", describe(&result));
        } else {
            print!("{}", describe(&result));
        }
        results.push(result);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(results.iter().all(|r| r.error.is_none()))
}
