//! `trainer eval`: trained streams' metrics on a labelled set (a CSV of crops, or a UTKFace
//! folder whose faces are cut as the demo cuts them), the published network's and the fused
//! estimate's beside them, their plots, and a Markdown report.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use clap::Args;
use dldl::{
    distribution::fusion::fuse,
    face::pipeline::Stream,
    networks::{preprocess::Normalization, vgg::AgeNet},
};

use crate::{
    artifacts::{card::load_model, models},
    cli::args::{ModelsArg, RunOptions},
    data::{
        chips::MultipleFaces,
        formats::folder::FolderSpec,
        load::{DEFAULT_MEMORY_LIMIT, LoadOptions, load_sets},
        loaded::LoadedSet,
        sets::DatasetSpec,
    },
    device,
    eval::{
        fusion::{self, is_published},
        report::{self, Calibration, DecadeMae},
    },
    files, progress,
    render::eval_plots,
};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A folder written by `trainer train` (or its model.json), or `pretrained` for the
    /// published network as it ships; repeat to evaluate several on the same faces.
    #[arg(long = "model", required = true)]
    pub models: Vec<PathBuf>,
    /// CSV to evaluate on: `path,mean[,std]` of face crops.
    #[arg(long, required_unless_present = "utkface", conflicts_with = "utkface")]
    pub data: Option<PathBuf>,
    /// A UTKFace folder (`[age]_[gender]_[race]_[date&time].jpg`) to evaluate on; its faces are
    /// detected and aligned as the demo does, images with no face counted.
    #[arg(long)]
    pub utkface: Option<PathBuf>,
    /// With --utkface: only the files this list names (a split, such as
    /// configs/splits/utkface-test.txt).
    #[arg(long, requires = "utkface")]
    pub list: Option<PathBuf>,
    /// Also evaluate the fused estimate, with the weights of this fusion.json (`trainer fuse`,
    /// or a pipeline's); every stream it weighs must be among the --model.
    #[arg(long)]
    pub fusion: Option<PathBuf>,
    /// Chip cache for --utkface (default: in the system's temporary folder).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Average each image's distribution with its mirror image's (test-time flip).
    #[arg(long)]
    pub flip: bool,
    /// Write the plots here: predicted vs true age, error by age, σ calibration (SVG when the
    /// name ends in .svg, else PNG); with several results, one file each, named
    /// `<stem>-<result>.<ext>`.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Write the results as a Markdown report: the metrics, MAE per decade and σ's calibration
    /// of every result, with the command, the commit and the machine.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write every face's true age and each result's distribution over the ages 0–100 here
    /// (JSON: `true_ages`, and `distributions` by result), for analyses of your own.
    #[arg(long)]
    pub distributions: Option<PathBuf>,
    #[command(flatten)]
    pub models_dir: ModelsArg,
    #[command(flatten)]
    pub run: RunOptions,
}

/// One evaluated result: a stream, the published network, or the fusion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evaluated {
    pub name: String,
    pub what: String,
    pub metrics: dldl::distribution::metrics::MetricsReport,
    pub mae_by_decade: Vec<DecadeMae>,
    pub calibration: Calibration,
    #[serde(skip)]
    pub expected: Vec<f32>,
    #[serde(skip)]
    pub distributions: Vec<Vec<f32>>,
}

/// A network to evaluate, with how it reads its input.
struct Candidate {
    name: String,
    what: String,
    path: PathBuf,
    network: AgeNet,
    input_size: usize,
    normalization: Normalization,
}

fn candidate(
    path: &Path,
    models_dir: &Path,
    device: &dldl::burn::tensor::Device,
) -> Result<Candidate> {
    if is_published(path) {
        let stream = Stream::pretrained(models::load_pretrained(models_dir, device)?);
        return Ok(Candidate {
            name: "published".to_string(),
            what: "the published network (age-v1.onnx, as it ships)".to_string(),
            path: path.to_path_buf(),
            network: stream.network,
            input_size: stream.input_size,
            normalization: stream.normalization,
        });
    }
    let loaded = load_model(path, device)?;
    let folder = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let name = folder.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(Candidate {
        what: format!(
            "{} ({} px), {} loss",
            loaded.card.model.architecture, loaded.card.model.input_size, loaded.card.loss
        ),
        name,
        path: path.to_path_buf(),
        network: loaded.model.for_inference(),
        input_size: loaded.card.model.input_size,
        normalization: loaded.card.model.normalization,
    })
}

fn evaluated(
    name: String,
    what: String,
    mu: &[f32],
    sigma: &[f32],
    expected: Vec<f32>,
    distributions: Vec<Vec<f32>>,
) -> Result<Evaluated> {
    let mut metrics = dldl::distribution::metrics::AgeMetrics::default();
    metrics.update(&expected, mu, sigma);
    Ok(Evaluated {
        name,
        what,
        metrics: metrics.report().context("no images to evaluate")?,
        mae_by_decade: report::per_decade(&expected, mu),
        calibration: report::calibration(&distributions, mu),
        expected,
        distributions,
    })
}

pub fn run(args: EvalArgs) -> Result<()> {
    let run = &args.run;
    let (device, device_name) = device::select(run.device.choice)?;
    let models_dir = args.models_dir.folder();
    let candidates: Vec<Candidate> = args
        .models
        .iter()
        .map(|m| candidate(m, &models_dir, &device))
        .collect::<Result<_>>()?;
    let spec = args.utkface.as_ref().map(|dir| {
        DatasetSpec::Utkface(FolderSpec {
            dir: dir.clone(),
            sigma: Some(run.sigma.into()),
            faces: Default::default(),
            limit: None,
            list: args.list.clone(),
        })
    });
    let options = LoadOptions {
        cache: args
            .cache
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("apparent-age-eval-cache")),
        models: models_dir.clone(),
        multiple_faces: MultipleFaces::Largest,
        skip_unreadable: run.skip_unreadable,
        memory_limit: DEFAULT_MEMORY_LIMIT,
        quiet: run.quiet,
    };
    // Each input size's set, loaded once.
    let mut sets: BTreeMap<usize, LoadedSet> = BTreeMap::new();
    let mut results = Vec::new();
    let mut labels: Option<(Vec<f32>, Vec<f32>)> = None;
    let mut skipped = 0;
    for c in &candidates {
        if let std::collections::btree_map::Entry::Vacant(slot) = sets.entry(c.input_size) {
            let set = match (&spec, &args.data) {
                (Some(spec), _) => {
                    load_sets(std::slice::from_ref(spec), c.input_size, &options, "eval")?
                }
                (None, Some(csv)) => LoadedSet::from_csv(
                    csv,
                    run.sigma,
                    c.input_size,
                    run.skip_unreadable,
                    run.quiet,
                    "eval",
                )?,
                (None, None) => bail!("give --data or --utkface"),
            };
            slot.insert(set);
        }
        let set = &sets[&c.input_size];
        skipped = set.skipped;
        match &labels {
            None => labels = Some((set.mu.clone(), set.sigma.clone())),
            Some((mu, _)) if *mu != set.mu => bail!(
                "the models see different images ({} and {}): evaluate models of one input size \
                 together",
                mu.len(),
                set.mu.len()
            ),
            Some(_) => {}
        }
        let bar = progress::bar(run.quiet, "eval    [{bar:30}] {pos}/{len} images {eta}");
        let predictions = report::evaluate(
            &c.network,
            set,
            &c.normalization,
            args.batch_size,
            args.flip,
            &device,
            &bar,
        )?;
        bar.finish_and_clear();
        results.push(evaluated(
            c.name.clone(),
            c.what.clone(),
            &set.mu,
            &set.sigma,
            predictions.expected,
            predictions.distributions,
        )?);
    }
    let (mu, sigma) = labels.context("no model to evaluate")?;
    if let Some(path) = &args.fusion {
        let fit = fusion::load(path)?;
        let weights: Vec<f32> = candidates
            .iter()
            .map(|c| {
                if is_published(&c.path) {
                    fit.published_weight()
                } else {
                    fit.weight_of(&c.path)
                }
                .with_context(|| {
                    format!("{} has no weight for {}", path.display(), c.path.display())
                })
            })
            .collect::<Result<_>>()?;
        // The trained streams at the fusion's temperature, as `trainer export --fusion` stores
        // them.
        let published: Vec<bool> = candidates.iter().map(|c| is_published(&c.path)).collect();
        let calibrated = fusion::at_temperature(
            &results
                .iter()
                .map(|r| r.distributions.clone())
                .collect::<Vec<_>>(),
            &published,
            fit.temperature,
        );
        let mut expected = Vec::with_capacity(mu.len());
        let mut distributions = Vec::with_capacity(mu.len());
        for i in 0..mu.len() {
            let streams: Vec<&[f32]> = calibrated.iter().map(|d| d[i].as_slice()).collect();
            let fused = fuse(&streams, &weights, fit.rule)?;
            expected.push(fused.expected_age);
            distributions.push(fused.distribution);
        }
        let what = candidates
            .iter()
            .zip(&weights)
            .map(|(c, w)| format!("{} × {w:.2}", c.name))
            .collect::<Vec<_>>()
            .join(" + ");
        results.push(evaluated(
            "fused".to_string(),
            format!(
                "fused ({:?}, trained streams at temperature {:.2}): {what}",
                fit.rule, fit.temperature
            ),
            &mu,
            &sigma,
            expected,
            distributions,
        )?);
    }
    if let Some(path) = &args.plots {
        for r in &results {
            let file = if results.len() == 1 {
                path.clone()
            } else {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let ext = path
                    .extension()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "png".into());
                path.with_file_name(format!("{stem}-{}.{ext}", r.name))
            };
            eval_plots::save(&file, &mu, &r.expected, &r.distributions)?;
            if !run.quiet {
                eprintln!("wrote {}", file.display());
            }
        }
    }
    let data = match (&spec, &args.data) {
        (Some(spec), _) => spec.name(),
        (None, Some(csv)) => csv.display().to_string(),
        (None, None) => String::new(),
    };
    if let Some(path) = &args.report {
        let text = markdown(
            &results,
            &data,
            mu.len(),
            skipped,
            run.sigma,
            &device_name,
            args.flip,
        );
        files::write(path, text.as_bytes())?;
        if !run.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.distributions {
        let json = serde_json::json!({
            "data": data,
            "flip": args.flip,
            "true_ages": mu,
            "distributions": results
                .iter()
                .map(|r| (r.name.clone(), r.distributions.clone()))
                .collect::<BTreeMap<_, _>>(),
        });
        files::write(path, &serde_json::to_vec(&json)?)?;
        if !run.quiet {
            eprintln!("wrote {}", path.display());
        }
    }
    if run.json {
        // One model: its metrics, decades and predictions at the top, as scripts read them;
        // every result (several models, the fusion) under `results`.
        let first = &results[0];
        let json = serde_json::json!({
            "model": args.models[0],
            "data": data,
            "device": device_name,
            "skipped": skipped,
            "flip": args.flip,
            "metrics": first.metrics,
            "mae_by_decade": first.mae_by_decade,
            "calibration": first.calibration,
            "predictions": first.expected,
            "results": results,
            "predictions_by_result": results
                .iter()
                .map(|r| (r.name.clone(), r.expected.clone()))
                .collect::<BTreeMap<_, _>>(),
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!("on {data}, {device_name}");
        for r in &results {
            println!("\n{}: {}", r.name, r.what);
            print!("{}", report::table(&r.metrics));
            print!("{}", report::decade_table(&r.mae_by_decade));
            println!(
                "within ±1σ {:.1} %, ±2σ {:.1} % (mean σ {:.2})",
                r.calibration.within_1_sigma * 100.0,
                r.calibration.within_2_sigma * 100.0,
                r.calibration.mean_sigma
            );
        }
        if skipped > 0 {
            println!("skipped  {skipped} unreadable images");
        }
    }
    Ok(())
}

/// The commit of the clone the trainer runs in (`git rev-parse`), when there is one.
fn commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(crate::crate_dir())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string())
}

/// The processor and its cores, from /proc/cpuinfo where there is one.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{model}, {cores} cores")
}

fn markdown(
    results: &[Evaluated],
    data: &str,
    images: usize,
    skipped: usize,
    sigma: f32,
    device: &str,
    flip: bool,
) -> String {
    let command: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect();
    let mut out = format!(
        "# Accuracy on real faces\n\nWritten by `trainer {}` at commit `{}` on {} ({device}).\n\n\
         Data: {data}: {images} faces evaluated{}. σ for the ε-error: {sigma} (the set gives \
         real ages, no spread of guesses). Test-time flip: {}.\n\n",
        command.join(" "),
        commit(),
        machine(),
        if skipped > 0 {
            format!(", {skipped} unreadable images left out")
        } else {
            String::new()
        },
        if flip { "yes" } else { "no" },
    );
    out.push_str(
        "| result | MAE | ε-error | CS@5 | within ±1σ | within ±2σ | mean σ | what |\n\
         |---|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for r in results {
        out.push_str(&format!(
            "| {} | {:.2} | {:.4} | {:.1} % | {:.1} % | {:.1} % | {:.2} | {} |\n",
            r.name,
            r.metrics.mae,
            r.metrics.epsilon_error,
            r.metrics.cs.get(4).copied().unwrap_or(f64::NAN) * 100.0,
            r.calibration.within_1_sigma * 100.0,
            r.calibration.within_2_sigma * 100.0,
            r.calibration.mean_sigma,
            r.what
        ));
    }
    out.push_str("\nMAE by decade of true age (faces in the decade):\n\n| true age | faces |");
    for r in results {
        out.push_str(&format!(" {} |", r.name));
    }
    out.push_str("\n|---|---:|");
    out.push_str(&"---:|".repeat(results.len()));
    out.push('\n');
    if let Some(first) = results.first() {
        for (k, d) in first.mae_by_decade.iter().enumerate() {
            out.push_str(&format!("| {}–{} | {} |", d.from, d.from + 9, d.images));
            for r in results {
                out.push_str(&format!(" {:.2} |", r.mae_by_decade[k].mae));
            }
            out.push('\n');
        }
    }
    out.push_str(
        "\nWithin ±kσ: the share of faces whose true age lies within k standard deviations of \
         the predicted distribution around its mean (68 % and 95 % for an honest σ).\n",
    );
    out
}
