//! `trainer`: writes the synthetic set, trains and evaluates apparent-age streams.

mod annotate;
mod atomic;
mod augment;
mod bench;
mod card;
mod data;
mod datasets;
mod device;
mod distill;
mod eval;
mod eval_plots;
mod export;
mod faces;
mod fuse;
mod loader;
mod matfile;
mod parallel;
mod pipeline;
mod plot;
mod predict;
mod progress;
mod raster;
mod synth;
mod training;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use dldl::{distribution::loss::LossKind, networks::vgg::Architecture};

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
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the synthetic data set: drawn faces whose traits encode their age.
    Synth(SynthArgs),
    /// Train one stream on a `path,mean[,std]` CSV, or run the stages of a pipeline file
    /// (--config); checkpoints after every epoch, resumable.
    Train(Box<TrainArgs>),
    /// Fit the fusion weights of trained streams on a validation set (minimising ε).
    Fuse(FuseArgs),
    /// Write a trained stream where the demo picks it up (f16 where it changes nothing).
    Export(ExportArgs),
    /// Measure training and inference throughput of each stream on a device.
    Bench(BenchArgs),
    /// Train a student stream on unlabelled face photos, towards the pretrained network's
    /// distributions.
    Distill(Box<DistillArgs>),
    /// Evaluate a trained stream on a `path,mean[,std]` CSV: MAE, ε-error, CS@1..10.
    Eval(EvalArgs),
    /// Find the faces in photographs and estimate each one's age distribution.
    Predict(PredictArgs),
}

#[derive(Debug, Args)]
struct PredictArgs {
    /// Photographs (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// A trained DLDL stream (a `trainer train --out` folder) to fuse with the pretrained one;
    /// repeat for several.
    #[arg(long = "stream")]
    streams: Vec<PathBuf>,
    /// How the streams' distributions are combined.
    #[arg(long, value_enum, default_value = "arithmetic")]
    fusion: FusionChoice,
    /// Do not average each stream over the face and its mirror image.
    #[arg(long)]
    no_flip: bool,
    /// Folder holding age-v1.onnx and blazeface/ (default: $APPARENT_AGE_MODELS, else the
    /// repository's models/).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Write an annotated PNG per image into this folder: boxes, estimates and each face's
    /// distribution.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FusionChoice {
    /// Weighted mean of the distributions.
    Arithmetic,
    /// Normalised weighted geometric mean: favours the ages the streams agree on.
    Geometric,
}

#[derive(Debug, Args)]
struct SynthArgs {
    /// Folder to write images/, train.csv, valid.csv, test.csv and dataset.json into.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 3000)]
    train: usize,
    #[arg(long, default_value_t = 500)]
    valid: usize,
    #[arg(long, default_value_t = 500)]
    test: usize,
    /// Side of the square images in pixels.
    #[arg(long, default_value_t = 64)]
    image_size: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print nothing but errors.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct FuseArgs {
    /// Trained streams (folders written by `trainer train`, or their model.json); two or more.
    #[arg(long = "model", required = true, num_args = 1)]
    models: Vec<PathBuf>,
    /// Validation CSV(s): `path,mean[,std]`.
    #[arg(long = "valid", required = true)]
    valid: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "arithmetic")]
    fusion: FusionChoice,
    /// Where to write the fitted weights.
    #[arg(long, default_value = "fusion.json")]
    out: PathBuf,
    /// The validation images are photographs: detect and align their faces (default: they
    /// are crops already).
    #[arg(long)]
    align: bool,
    /// Preprocessing cache (default: beside --out).
    #[arg(long)]
    cache: Option<PathBuf>,
    #[arg(long)]
    models_dir: Option<PathBuf>,
    #[command(flatten)]
    run: RunOptions,
}

#[derive(Debug, Args)]
struct DistillArgs {
    /// Folder of face photographs (searched recursively; PNG and JPEG).
    #[arg(long)]
    images: PathBuf,
    /// Run folder: the teacher's answers, checkpoints and the student.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value = "tiny-age-net")]
    arch: Architecture,
    #[arg(long, default_value_t = 224)]
    input_size: usize,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Share of the photos held out to validate against the teacher.
    #[arg(long, default_value_t = 0.1)]
    valid_fraction: f32,
    /// Photos with several faces: keep the largest (default: leave them out).
    #[arg(long)]
    largest_face: bool,
    /// Only mirror the training images (default: DLDL-v2's augmentation).
    #[arg(long)]
    flip_only: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop after this many epochs in this invocation; run again to continue.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Folder holding age-v1.onnx and the detector (default: $APPARENT_AGE_MODELS, else models/).
    #[arg(long)]
    models: Option<PathBuf>,
    #[command(flatten)]
    run: RunOptions,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Streams to measure (repeat; default: all).
    #[arg(long = "arch")]
    architectures: Vec<Architecture>,
    #[arg(long, default_value_t = 224)]
    input_size: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Timed steps per stream (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// Also write the table as Markdown to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// A trained stream (a `trainer train` folder or its model.json).
    #[arg(long)]
    model: PathBuf,
    /// The stream's name on the page (letters, digits, `-`, `_`).
    #[arg(long)]
    name: String,
    /// The model folder the demo serves (default: $APPARENT_AGE_MODELS, else models/).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Keep f32 weights even where f16 would change nothing.
    #[arg(long)]
    f32: bool,
    /// Fusion weight of the stream on the page.
    #[arg(long, default_value_t = 1.0, conflicts_with = "fusion")]
    weight: f32,
    /// Take the weight `trainer fuse` fitted for this stream from its fusion.json.
    #[arg(long)]
    fusion: Option<PathBuf>,
    /// Export a stream trained on the synthetic set (only for tests, into a temporary folder).
    #[arg(long)]
    allow_synthetic: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// A pipeline file (TOML): its stages run in order into --out, each resumable.
    #[arg(long, conflicts_with_all = ["train", "valid"])]
    config: Option<PathBuf>,
    /// Training CSV: `path,mean[,std]`, paths relative to the CSV.
    #[arg(long, required_unless_present = "config")]
    train: Option<PathBuf>,
    /// Validation CSV, evaluated after every epoch.
    #[arg(long)]
    valid: Option<PathBuf>,
    /// Folder for checkpoints, learning curves (training.svg), the final weights (model.bpk)
    /// and the model card (model.json).
    #[arg(long)]
    out: PathBuf,
    /// Network: vgg16, vgg16-bn, thin-age-net or tiny-age-net.
    #[arg(long, default_value = "thin-age-net")]
    arch: Architecture,
    /// Loss: kl, cross-entropy, or kl-l1[:λ] (DLDL-v2, λ = 1 by default).
    #[arg(long, default_value = "kl")]
    loss: LossKind,
    /// Side of the square network input in pixels (≥ 32); images are resized to it.
    #[arg(long, default_value_t = 224)]
    input_size: usize,
    #[arg(long, default_value_t = 30)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    learning_rate: f64,
    /// Multiply the learning rate by --lr-gamma every this many epochs (0: never).
    #[arg(long, default_value_t = 0)]
    lr_step: usize,
    #[arg(long, default_value_t = 0.1)]
    lr_gamma: f64,
    /// Do not mirror training images at random.
    #[arg(long)]
    no_flip: bool,
    /// Preprocessing cache (default: <out>/cache).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Folder holding the face detector, for sets whose faces are aligned (default:
    /// $APPARENT_AGE_MODELS, else models/).
    #[arg(long)]
    models: Option<PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// Stop after this many epochs in this invocation; --resume continues later.
    #[arg(long)]
    stop_after: Option<usize>,
    #[command(flatten)]
    run: RunOptions,
}

/// Options of every command that reads labelled images and runs a network.
#[derive(Debug, Args)]
struct RunOptions {
    /// σ for rows without a std (real-age data).
    #[arg(long, default_value_t = 3.0)]
    sigma: f32,
    /// Leave out rows whose image cannot be read, instead of stopping.
    #[arg(long)]
    skip_unreadable: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    /// Print the result as JSON on stdout (train: the run's summary; eval: the metrics and
    /// every prediction).
    #[arg(long)]
    json: bool,
    /// Print nothing but errors (and --json output).
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// A folder written by `trainer train`, or its model.json.
    #[arg(long)]
    model: PathBuf,
    /// CSV to evaluate on: `path,mean[,std]`.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Average each image's distribution with its mirror image's (test-time flip).
    #[arg(long)]
    flip: bool,
    /// Write a PNG here: predicted vs true age, error by age, σ calibration.
    #[arg(long)]
    plots: Option<PathBuf>,
    #[command(flatten)]
    run: RunOptions,
}

fn synth(args: SynthArgs) -> Result<()> {
    let config = synth::SynthConfig {
        train: args.train,
        valid: args.valid,
        test: args.test,
        image_size: args.image_size,
        seed: args.seed,
    };
    if args.image_size < 32 {
        anyhow::bail!("--image-size must be at least 32");
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

fn csv_set(path: PathBuf, sigma: f32) -> datasets::DatasetSpec {
    datasets::DatasetSpec::Csv(datasets::CsvSpec {
        path,
        sigma: Some(sigma),
        faces: datasets::FaceMode::AsIs,
        limit: None,
    })
}

fn train(args: TrainArgs) -> Result<()> {
    let (device, device_name) = device::select(args.run.device)?;
    if !args.run.quiet {
        eprintln!("device: {device_name}");
    }
    let models = args.models.unwrap_or_else(predict::default_models_dir);
    if let Some(config) = args.config {
        return pipeline::run(
            &pipeline::RunPipeline {
                config,
                out: args.out,
                models,
                quiet: args.run.quiet,
            },
            &device,
            &device_name,
        );
    }
    let train = args.train.context("--train or --config is needed")?;
    let spec = training::RunSpec {
        architecture: args.arch,
        input_size: args.input_size,
        loss: args.loss,
        train: vec![csv_set(train, args.run.sigma)],
        valid: args
            .valid
            .into_iter()
            .map(|v| csv_set(v, args.run.sigma))
            .collect(),
        batch_size: args.batch_size,
        optimizer: training::OptimizerSpec::adam(args.learning_rate),
        lr_step_epochs: args.lr_step,
        lr_gamma: args.lr_gamma,
        augment: augment::Augmentation {
            flip: !args.no_flip,
            ..augment::Augmentation::default()
        },
        multiple_faces: faces::MultipleFaces::Skip,
        init: None,
        soft_targets: None,
        seed: args.seed,
    };
    let options = training::TrainOptions {
        resume: args.resume,
        skip_unreadable: args.run.skip_unreadable,
        quiet: args.run.quiet,
        stop_after: args.stop_after,
        cache: args.cache.unwrap_or_else(|| args.out.join("cache")),
        models,
        ..training::TrainOptions::new(spec, args.epochs, args.out)
    };
    let summary = training::train(&options, &device, &device_name)?;
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    Ok(())
}

fn fuse_command(args: FuseArgs) -> Result<()> {
    let (device, _) = device::select(args.run.device)?;
    let faces = if args.align {
        datasets::FaceMode::Align
    } else {
        datasets::FaceMode::AsIs
    };
    let valid: Vec<datasets::DatasetSpec> = args
        .valid
        .into_iter()
        .map(|path| {
            datasets::DatasetSpec::Csv(datasets::CsvSpec {
                path,
                sigma: Some(args.run.sigma),
                faces,
                limit: None,
            })
        })
        .collect();
    let rule = match args.fusion {
        FusionChoice::Arithmetic => dldl::distribution::fusion::FusionRule::Arithmetic,
        FusionChoice::Geometric => dldl::distribution::fusion::FusionRule::Geometric,
    };
    let folder = args
        .out
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let options = training::LoadOptions {
        cache: args.cache.unwrap_or_else(|| folder.join("cache")),
        models: args.models_dir.unwrap_or_else(predict::default_models_dir),
        multiple_faces: faces::MultipleFaces::Skip,
        skip_unreadable: args.run.skip_unreadable,
        memory_limit: training::DEFAULT_MEMORY_LIMIT,
        quiet: args.run.quiet,
    };
    let fit = fuse::fit_streams(&args.models, &valid, rule, &options, &device)?;
    atomic::write(&args.out, &serde_json::to_vec_pretty(&fit)?)?;
    if args.run.json {
        println!("{}", serde_json::to_string_pretty(&fit)?);
    } else {
        print!("{}", fuse::describe(&fit));
        println!("wrote {}", args.out.display());
    }
    Ok(())
}

fn distill_command(args: DistillArgs) -> Result<()> {
    let (device, device_name) = device::select(args.run.device)?;
    if !args.run.quiet {
        eprintln!("device: {device_name}");
    }
    let multiple_faces = if args.largest_face {
        faces::MultipleFaces::Largest
    } else {
        faces::MultipleFaces::Skip
    };
    let spec = training::RunSpec {
        architecture: args.arch,
        input_size: args.input_size,
        loss: dldl::distribution::loss::LossKind::Kl,
        train: Vec::new(),
        valid: Vec::new(),
        batch_size: args.batch_size,
        optimizer: training::OptimizerSpec::adam(args.learning_rate),
        lr_step_epochs: 0,
        lr_gamma: 0.1,
        augment: if args.flip_only {
            augment::Augmentation::default()
        } else {
            distill::default_augmentation()
        },
        multiple_faces,
        init: None,
        soft_targets: None,
        seed: args.seed,
    };
    let train = training::TrainOptions {
        skip_unreadable: args.run.skip_unreadable,
        quiet: args.run.quiet,
        stop_after: args.stop_after,
        models: args.models.unwrap_or_else(predict::default_models_dir),
        ..training::TrainOptions::new(spec, args.epochs, args.out)
    };
    let summary = distill::distill(
        &distill::DistillOptions {
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

fn bench_command(args: BenchArgs) -> Result<()> {
    let (device, device_name) = device::select(args.device)?;
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
        atomic::write(path, table.as_bytes())?;
    }
    if args.json {
        // One line, for scripts.
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{table}");
    }
    Ok(())
}

fn export_command(args: ExportArgs) -> Result<()> {
    let (device, _) = device::select(args.device)?;
    let weight = match &args.fusion {
        None => args.weight,
        Some(path) => {
            let fit = fuse::load(path)?;
            let same = |a: &std::path::Path, b: &std::path::Path| {
                let key = |p: &std::path::Path| {
                    let p = if p.is_dir() {
                        p.join(card::CARD_FILE)
                    } else {
                        p.to_path_buf()
                    };
                    std::fs::canonicalize(&p).unwrap_or(p)
                };
                key(a) == key(b)
            };
            fit.streams
                .iter()
                .find(|s| same(&s.model, &args.model))
                .map(|s| s.weight)
                .with_context(|| {
                    format!(
                        "{} has no weight for {}",
                        path.display(),
                        args.model.display()
                    )
                })?
        }
    };
    let report = export::export(
        &export::ExportOptions {
            model: args.model,
            models: args.models.unwrap_or_else(predict::default_models_dir),
            name: args.name,
            force_f32: args.f32,
            allow_synthetic: args.allow_synthetic,
            weight,
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

fn eval(args: EvalArgs) -> Result<()> {
    let run = &args.run;
    let (device, device_name) = device::select(run.device)?;
    let loaded = card::load_model(&args.model, &device)?;
    let size = loaded.card.model.input_size;
    let set = data::LoadedSet::from_csv(
        &args.data,
        run.sigma,
        size,
        run.skip_unreadable,
        run.quiet,
        "eval",
    )?;
    let bar = progress::bar(run.quiet, "eval    [{bar:30}] {pos}/{len} images {eta}");
    let eval::Predictions {
        report,
        expected: predictions,
        distributions,
    } = eval::evaluate(
        &loaded.model,
        &set,
        &loaded.card.model.normalization,
        args.batch_size,
        args.flip,
        &device,
        &bar,
    )?;
    bar.finish_and_clear();
    let decades = eval::per_decade(&predictions, &set.mu);
    if let Some(path) = &args.plots {
        let picture = eval_plots::draw(&set.mu, &predictions, &distributions);
        atomic::write_with(path, |tmp| {
            picture
                .save_with_format(tmp, image::ImageFormat::Png)
                .with_context(|| format!("cannot write {}", path.display()))
        })?;
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
        print!("{}", eval::table(&report));
        print!("{}", eval::decade_table(&decades));
        if set.skipped > 0 {
            println!("skipped  {} unreadable images", set.skipped);
        }
    }
    Ok(())
}

/// Returns whether every image could be processed.
fn predict(args: PredictArgs) -> Result<bool> {
    let (device, device_name) = device::select(args.device)?;
    let models = args.models.unwrap_or_else(predict::default_models_dir);
    let fusion = match args.fusion {
        FusionChoice::Arithmetic => dldl::distribution::fusion::FusionRule::Arithmetic,
        FusionChoice::Geometric => dldl::distribution::fusion::FusionRule::Geometric,
    };
    let (estimator, warnings) =
        predict::estimator(&models, &args.streams, fusion, !args.no_flip, &device)?;
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
        let result = predict::predict_image(&estimator, image, args.out.as_deref(), &device);
        if args.json {
            if let Some(error) = &result.error {
                eprintln!("error: {error}");
            }
        } else if result.error.is_some() {
            eprint!("{}", predict::describe(&result));
        } else {
            print!("{}", predict::describe(&result));
        }
        results.push(result);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    Ok(results.iter().all(|r| r.error.is_none()))
}

impl Command {
    /// The device the command was told to use, if any.
    fn device(&self) -> Option<DeviceChoice> {
        match self {
            Command::Synth(_) => None,
            Command::Train(args) => Some(args.run.device),
            Command::Eval(args) => Some(args.run.device),
            Command::Predict(args) => Some(args.device),
            Command::Fuse(args) => Some(args.run.device),
            Command::Export(args) => Some(args.device),
            Command::Distill(args) => Some(args.run.device),
            Command::Bench(args) => Some(args.device),
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
        // Without CUDA built in, `--device cuda` fails with its own message.
        Some(DeviceChoice::Cuda | DeviceChoice::Auto) | None => return,
    };
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: called first thing in `main`, before any thread exists, so nothing can read
        // the environment while it changes.
        unsafe { std::env::set_var("BURN_DEVICE", name) };
    }
}

fn main() {
    let cli = Cli::parse();
    pin_default_device(cli.command.device());
    let result = match cli.command {
        Command::Synth(args) => synth(args),
        Command::Train(args) => train(*args),
        Command::Eval(args) => eval(args),
        Command::Fuse(args) => fuse_command(args),
        Command::Export(args) => export_command(args),
        Command::Distill(args) => distill_command(*args),
        Command::Bench(args) => bench_command(args),
        Command::Predict(args) => match predict(args) {
            Ok(true) => Ok(()),
            // Each failed image has had its line; the status says that some failed.
            Ok(false) => std::process::exit(1),
            Err(error) => Err(error),
        },
    }
    .context("trainer failed");
    if let Err(error) = result {
        // One line: what failed and why, outermost first.
        let chain: Vec<String> = error.chain().skip(1).map(|e| e.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}
