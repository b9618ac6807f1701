//! `trainer fuse`: the fusion weights of trained streams, fitted on validation sets.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::{
    artifacts::models::default_models_dir,
    cli::args::{FusionArg, RunOptions},
    data::{
        FaceMode,
        chips::MultipleFaces,
        load::{DEFAULT_MEMORY_LIMIT, LoadOptions},
        sets::DatasetSpec,
    },
    device,
    eval::fusion::{describe, fit_streams},
    files,
};

#[derive(Debug, Args)]
pub struct FuseArgs {
    /// Trained streams (folders written by `trainer train`, or their model.json); two or more.
    #[arg(long = "model", required = true, num_args = 1)]
    pub models: Vec<PathBuf>,
    /// Validation CSV(s): `path,mean[,std]`.
    #[arg(long = "valid", required = true)]
    pub valid: Vec<PathBuf>,
    #[command(flatten)]
    pub fusion: FusionArg,
    /// Where to write the fitted weights.
    #[arg(long, default_value = "fusion.json")]
    pub out: PathBuf,
    /// The validation images are photographs: detect and align their faces (default: they
    /// are crops already).
    #[arg(long)]
    pub align: bool,
    /// Preprocessing cache (default: beside --out).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// The model folder, for --align (default: $APPARENT_AGE_MODELS, else the repository's
    /// models/).
    #[arg(long)]
    pub models_dir: Option<PathBuf>,
    #[command(flatten)]
    pub run: RunOptions,
}

pub fn run(args: FuseArgs) -> Result<()> {
    let (device, _) = device::select(args.run.device.choice)?;
    let faces = if args.align {
        FaceMode::Align
    } else {
        FaceMode::AsIs
    };
    let sigma = args.run.sigma;
    let valid: Vec<DatasetSpec> = args
        .valid
        .into_iter()
        .map(|path| DatasetSpec::csv(path, sigma, faces))
        .collect();
    let folder = args.out.parent().unwrap_or(Path::new(".")).to_path_buf();
    let options = LoadOptions {
        cache: args.cache.unwrap_or_else(|| folder.join("cache")),
        models: args.models_dir.unwrap_or_else(default_models_dir),
        multiple_faces: MultipleFaces::Skip,
        skip_unreadable: args.run.skip_unreadable,
        memory_limit: DEFAULT_MEMORY_LIMIT,
        quiet: args.run.quiet,
    };
    let fit = fit_streams(&args.models, &valid, args.fusion.rule, &options, &device)?;
    files::write(&args.out, &serde_json::to_vec_pretty(&fit)?)?;
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&fit)?);
    } else {
        print!("{}", describe(&fit));
        println!("wrote {}", args.out.display());
    }
    Ok(())
}
