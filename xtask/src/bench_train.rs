//! `cargo xtask bench-train [cpu|wgpu|cuda] [options]`: the trainer's training and inference
//! throughput (`trainer bench`, release build) beside PyTorch's on the same five networks
//! (`scripts/bench_pytorch.py`), alternating the two in rounds, written to
//! `bench/TRAINING-<device>.md`.

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{
    Result, bench::json_output, cache_dir, cargo, machine::machine, target_dir, workspace_root,
};

/// The PyTorch installed from PyPI where none is importable (a few GB: PyPI's Linux wheels bring
/// their CUDA libraries).
const TORCH: &str = "torch==2.15.0";

/// One row group of the table: these streams at this input size and batch, `steps` timed steps.
#[derive(Debug, Clone)]
pub(crate) struct Setting {
    pub(crate) architectures: Vec<String>,
    pub(crate) input_size: usize,
    pub(crate) batch_size: usize,
    pub(crate) steps: usize,
}

pub(crate) fn setting(
    architectures: &[&str],
    input_size: usize,
    batch_size: usize,
    steps: usize,
) -> Setting {
    Setting {
        architectures: architectures.iter().map(|a| a.to_string()).collect(),
        input_size,
        batch_size,
        steps,
    }
}

const ALL: [&str; 5] = [
    "vgg16",
    "vgg16-bn",
    "thin-age-net",
    "tiny-age-net",
    "pretrained",
];

/// What a run measures unless told otherwise: on a CPU every stream at 64 px (batch 32) and the
/// two small ones at the papers' 224 px (batch 8); on a GPU every stream at 224 px, batch 128.
fn default_settings(device: &str) -> Vec<Setting> {
    if device == "cpu" {
        vec![
            setting(&ALL, 64, 32, 3),
            setting(&["thin-age-net", "tiny-age-net"], 224, 8, 2),
        ]
    } else {
        vec![setting(&ALL, 224, 128, 10)]
    }
}

struct Options {
    device: String,
    rounds: usize,
    /// A trainer binary to run instead of building one (`--trainer PATH`).
    trainer: Option<PathBuf>,
    /// One setting from `--arch`, `--input-size`, `--batch-size`, `--steps`, replacing the
    /// defaults (a short run, e.g. on a software Vulkan driver).
    custom: Option<Setting>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut device = "cpu".to_string();
    let mut rounds = 3;
    let mut trainer = None;
    let mut architectures = Vec::new();
    let (mut input, mut batch, mut steps) = (None, None, None);
    let mut i = 0;
    let number = |flag: &str, value: Option<&String>| -> Result<usize> {
        value
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| format!("bench-train: {flag} takes a whole number above 0"))
    };
    while i < args.len() {
        let value = args.get(i + 1);
        match args[i].as_str() {
            "cpu" | "wgpu" | "cuda" => {
                device = args[i].clone();
                i += 1;
                continue;
            }
            "--rounds" => rounds = number("--rounds", value)?,
            "--trainer" => {
                trainer = Some(PathBuf::from(
                    value.ok_or("bench-train: --trainer takes a path")?,
                ))
            }
            "--input-size" => input = Some(number("--input-size", value)?),
            "--batch-size" => batch = Some(number("--batch-size", value)?),
            "--steps" => steps = Some(number("--steps", value)?),
            "--arch" => architectures.push(
                value
                    .filter(|a| ALL.contains(&a.as_str()))
                    .ok_or_else(|| format!("bench-train: --arch takes one of {}", ALL.join(", ")))?
                    .clone(),
            ),
            other => {
                return Err(format!(
                    "bench-train takes cpu, wgpu or cuda and --rounds, --trainer, --arch, \
                     --input-size, --batch-size, --steps; not `{other}`"
                ));
            }
        }
        i += 2;
    }
    let custom =
        (!architectures.is_empty() || input.is_some() || batch.is_some() || steps.is_some()).then(
            || {
                let base = &default_settings(&device)[0];
                Setting {
                    architectures: if architectures.is_empty() {
                        base.architectures.clone()
                    } else {
                        architectures
                    },
                    input_size: input.unwrap_or(base.input_size),
                    batch_size: batch.unwrap_or(base.batch_size),
                    steps: steps.unwrap_or(base.steps),
                }
            },
        );
    Ok(Options {
        device,
        rounds,
        trainer,
        custom,
    })
}

/// A Python that imports torch: `$PYTORCH_PYTHON`, else `python3` when it has torch (as on a GPU
/// machine with PyTorch preinstalled), else a virtual environment in the cache folder with
/// [`TORCH`] from PyPI, made once.
pub(crate) fn python_with_torch() -> Result<PathBuf> {
    let imports_torch = |python: &PathBuf| {
        Command::new(python)
            .args(["-c", "import torch"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(python) = std::env::var_os("PYTORCH_PYTHON").map(PathBuf::from) {
        return if imports_torch(&python) {
            Ok(python)
        } else {
            Err(format!(
                "PYTORCH_PYTHON={} cannot import torch",
                python.display()
            ))
        };
    }
    for python in [
        PathBuf::from("python3"),
        cache_dir().join("venv-bench-torch/bin/python"),
    ] {
        if imports_torch(&python) {
            return Ok(python);
        }
    }
    let venv = cache_dir().join("venv-bench-torch");
    let hint = "the benchmark needs python3 with venv and pip and PyPI reachable, or \
                PYTORCH_PYTHON naming a Python with torch";
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    crate::run("creating a Python environment for PyTorch", make)
        .map_err(|e| format!("{e}; {hint}"))?;
    let mut install = Command::new(venv.join("bin/pip"));
    install.args(["install", "-q", TORCH]);
    crate::run(
        &format!("installing {TORCH} from PyPI (a few GB with its CUDA libraries, once)"),
        install,
    )
    .map_err(|e| format!("{e}; {hint}"))?;
    Ok(venv.join("bin/python"))
}

/// The release trainer, built the way the README says users build it.
fn release_trainer(device: &str) -> Result<PathBuf> {
    let mut build = cargo();
    build.args(["build", "--release", "-p", "trainer"]);
    if device == "cuda" {
        build.args(["--features", "cuda"]);
    }
    crate::run(
        "building the trainer (cargo build --release -p trainer)",
        build,
    )?;
    Ok(target_dir().join("release/trainer"))
}

/// One measurement of one setting: the streams' reports, keyed by architecture.
pub(crate) type Report = Value;

/// The arguments both benchmarks take for a setting.
fn setting_args(s: &Setting) -> Vec<String> {
    let mut args = Vec::new();
    for a in &s.architectures {
        args.extend(["--arch".to_string(), a.clone()]);
    }
    for (flag, value) in [
        ("--input-size", s.input_size),
        ("--batch-size", s.batch_size),
        ("--steps", s.steps),
    ] {
        args.extend([flag.to_string(), value.to_string()]);
    }
    args
}

pub(crate) fn run_burn(trainer: &PathBuf, device: &str, s: &Setting) -> Result<Report> {
    let mut command = Command::new(trainer);
    command
        .args(["bench", "--device", device, "--json"])
        .args(setting_args(s));
    json_output(
        &format!("trainer bench --device {device} ({} px)", s.input_size),
        command,
    )
}

fn run_pytorch(
    python: &PathBuf,
    device: &str,
    threads: usize,
    autocast: bool,
    s: &Setting,
) -> Result<Report> {
    let mut command = Command::new(python);
    command
        .arg(workspace_root().join("scripts/bench_pytorch.py"))
        .args(["--device", if device == "cpu" { "cpu" } else { "auto" }])
        .args(["--threads", &threads.to_string()]);
    if autocast {
        command.args(["--autocast", "bf16"]);
    }
    command.args(setting_args(s));
    let what = if autocast {
        "scripts/bench_pytorch.py (autocast bf16)"
    } else {
        "scripts/bench_pytorch.py"
    };
    json_output(&format!("{what} ({} px)", s.input_size), command)
}

/// A stream's figure (`key`) in each round's report.
pub(crate) fn figures(reports: &[Report], architecture: &str, key: &str) -> Vec<f64> {
    reports
        .iter()
        .filter_map(|r| {
            r["streams"]
                .as_array()?
                .iter()
                .find(|s| s["architecture"] == architecture)?[key]
                .as_f64()
        })
        .collect()
}

pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// `median` with the rounds' range, e.g. "33.1 (32.0–34.2)".
pub(crate) fn cell(values: &[f64]) -> String {
    if values.is_empty() {
        return "–".to_string();
    }
    let digits = |v: f64| match v {
        v if v < 10.0 => 2,
        v if v < 100.0 => 1,
        _ => 0,
    };
    let m = median(values);
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.len() == 1 {
        format!("{m:.*}", digits(m))
    } else {
        format!(
            "{m:.*} ({lo:.*}–{hi:.*})",
            digits(m),
            digits(lo),
            digits(hi)
        )
    }
}

pub(crate) fn ratio(burn: &[f64], torch: &[f64]) -> String {
    let r = median(burn) / median(torch);
    if r.is_finite() {
        format!("{r:.2}×")
    } else {
        "–".to_string()
    }
}

pub fn bench_train(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let device = options.device.as_str();
    let settings = options
        .custom
        .clone()
        .map_or_else(|| default_settings(device), |s| vec![s]);
    let trainer = match &options.trainer {
        Some(path) if path.is_file() => path.clone(),
        Some(path) => return Err(format!("--trainer {}: no such file", path.display())),
        None => release_trainer(device)?,
    };
    let python = python_with_torch()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut table = String::new();
    let _ = writeln!(
        table,
        "# Training throughput beside PyTorch (`cargo xtask bench-train {device}`)\n"
    );
    let mut burn_device = String::new();
    let mut torch_device = String::new();
    let mut bf16_device = String::new();
    let mut loader = String::new();
    let mut rows = String::new();
    for s in &settings {
        let (mut burn, mut torch, mut bf16) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..options.rounds {
            eprintln!(
                "xtask: {} px, batch {}: round {} of {}",
                s.input_size,
                s.batch_size,
                round + 1,
                options.rounds
            );
            // Alternate who goes first, so that neither always runs on a cooler machine.
            let measure_torch = |torch: &mut Vec<Report>, bf16: &mut Vec<Report>| {
                let report = run_pytorch(&python, device, threads, false, s)?;
                let on_gpu = report["device_type"] == "cuda";
                torch.push(report);
                if on_gpu {
                    bf16.push(run_pytorch(&python, device, threads, true, s)?);
                }
                Result::Ok(())
            };
            if round % 2 == 0 {
                burn.push(run_burn(&trainer, device, s)?);
                measure_torch(&mut torch, &mut bf16)?;
            } else {
                measure_torch(&mut torch, &mut bf16)?;
                burn.push(run_burn(&trainer, device, s)?);
            }
        }
        burn_device = burn[0]["device"].as_str().unwrap_or("?").to_string();
        torch_device = torch[0]["device"].as_str().unwrap_or("?").to_string();
        if let Some(r) = bf16.first() {
            bf16_device = r["device"].as_str().unwrap_or("?").to_string();
        }
        let rates: Vec<f64> = burn
            .iter()
            .filter_map(|r| r["loader_images_per_second"].as_f64())
            .collect();
        let _ = writeln!(
            loader,
            "- {} px: {} images/s with {} threads.",
            s.input_size,
            cell(&rates),
            burn[0]["loader_workers"]
        );
        for a in &s.architectures {
            let size = burn[0]["streams"]
                .as_array()
                .and_then(|v| v.iter().find(|x| x["architecture"] == a.as_str()))
                .map_or(s.input_size, |x| {
                    x["input_size"].as_u64().unwrap_or(0) as usize
                });
            let bt = figures(&burn, a, "train_images_per_second");
            let tt = figures(&torch, a, "train_images_per_second");
            let bi = figures(&burn, a, "inference_images_per_second");
            let ti = figures(&torch, a, "inference_images_per_second");
            let bf = figures(&burn, a, "inference_folded_images_per_second");
            let _ = write!(
                rows,
                "| {a} | {size} px | {} | {} | {} | **{}** | {} | {} | **{}** | {} | **{}** |",
                s.batch_size,
                cell(&bt),
                cell(&tt),
                ratio(&bt, &tt),
                cell(&bi),
                cell(&ti),
                ratio(&bi, &ti),
                cell(&bf),
                ratio(&bf, &ti)
            );
            if !bf16.is_empty() {
                let bb = figures(&bf16, a, "train_images_per_second");
                let _ = write!(rows, " {} | {} |", cell(&bb), ratio(&bt, &bb));
            }
            rows.push('\n');
        }
    }
    let _ = writeln!(
        table,
        "Machine: {}. burn: `trainer bench` from the release build (`cargo build --release -p \
         trainer`), {burn_device}. PyTorch: `scripts/bench_pytorch.py`, {torch_device}, the same \
         networks layer for layer.\n",
        machine()
    );
    let _ = writeln!(
        table,
        "Both take random u8 batches, normalise them, and run forward, KL + L1 loss (Gaussian \
         labels, σ = 3), backward and Adam; inference is the forward pass with the softmax, read \
         back to the host; \
         \"folded\": burn's inference with the batch norms (the pretrained network: its affine \
         layers) folded into the convolutions, as `trainer eval`, `predict` and the page run a \
         stream (PyTorch's eval mode does not fold). The pretrained network takes 64 px chips whatever the row's size. Each \
         runtime warms up with one step, then times the steps (the setting's `--steps`); {}. \
         Images per second: the median over the \
         rounds, their range in brackets; ratio = burn ÷ PyTorch (above 1: burn is faster).\n",
        match options.rounds {
            1 => "one round, burn first".to_string(),
            n => format!("{n} rounds alternate which runtime goes first"),
        }
    );
    let mut header = "| stream | input | batch | train, burn | train, PyTorch | ratio | \
                      inference, burn | inference, PyTorch | ratio | inference, burn folded | \
                      ratio |"
        .to_string();
    let mut rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|".to_string();
    if !bf16_device.is_empty() {
        header.push_str(" train, PyTorch bf16 | ratio |");
        rule.push_str("---:|---:|");
        let _ = writeln!(table, "PyTorch bf16: {bf16_device}.\n");
    }
    let _ = writeln!(table, "{header}\n{rule}\n{rows}");
    let _ = writeln!(
        table,
        "The trainer's batch workers reading and augmenting chips as DLDL-v2 trains (in the same \
         runs):\n\n{loader}"
    );
    print!("{table}");
    let path = workspace_root().join(format!("bench/TRAINING-{device}.md"));
    std::fs::write(&path, &table).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
