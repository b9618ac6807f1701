//! `cargo xtask bench-backends [--rounds N]`: burn's CPU backends side by side on the same
//! benchmark (`trainer bench`, release builds): flex, the trainer's CPU backend, against ndarray
//! with its own matrix products (matrixmultiply) and with the system's OpenBLAS, on ThinAgeNet's
//! and TinyAgeNet's training and the pretrained network's inference, alternating in rounds;
//! written to `bench/CPU_BACKENDS.md`.
//!
//! ndarray's BLAS is a build-time choice, so there are two binaries, built without wgpu in the
//! shared target folder and copied aside (`<target>/bench-backends/`): `--features ndarray`
//! (flex and ndarray with matrixmultiply) and `--features openblas`. burn 0.22's other CPU
//! backends are named in the report with why they are not measured.

use std::{fmt::Write as _, path::PathBuf};

use crate::{
    Result,
    bench_train::{Report, Setting, cell, figures, median, ratio, run_burn, setting},
    cargo,
    machine::machine,
    target_dir, workspace_root,
};

/// One CPU backend: how its trainer is built and how `trainer bench` is pointed at it.
struct Backend {
    name: &'static str,
    /// `cargo build --release -p trainer` arguments after those.
    features: &'static [&'static str],
    device: &'static str,
}

const BACKENDS: [Backend; 3] = [
    // The ndarray build holds flex too (the trainer always has it), so both are measured in
    // one binary, built without wgpu, which a CPU benchmark does not need.
    Backend {
        name: "flex",
        features: &["--no-default-features", "--features", "ndarray"],
        device: "cpu",
    },
    Backend {
        name: "ndarray",
        features: &["--no-default-features", "--features", "ndarray"],
        device: "ndarray",
    },
    Backend {
        name: "ndarray + OpenBLAS",
        features: &["--no-default-features", "--features", "openblas"],
        device: "ndarray",
    },
];

impl Backend {
    /// The build's features, as a file name.
    fn device_features(&self) -> String {
        self.features
            .last()
            .map_or("default", |f| f.trim_start_matches('-'))
            .to_string()
    }
}

/// The `trainer bench` calls: ThinAgeNet and TinyAgeNet at 64 and 224 px, the pretrained network
/// at batch 32 and 1 (its own 64 px whatever the size).
fn settings() -> [Setting; 4] {
    let small = ["thin-age-net", "tiny-age-net"];
    [
        setting(&small, 64, 32, 3),
        // One timed step: ndarray took about 6 minutes for these two streams at 2 steps here.
        setting(&small, 224, 8, 1),
        setting(&["pretrained"], 64, 32, 3),
        setting(&["pretrained"], 64, 1, 20),
    ]
}

/// The order the settings run in each round: the 224 px training, by far the slowest on
/// ndarray, last.
const RUN_ORDER: [usize; 4] = [0, 2, 3, 1];

/// The figures of one row of the table: which setting, stream and measure.
struct Row {
    setting: usize,
    architecture: &'static str,
    key: &'static str,
    what: &'static str,
}

const ROWS: [Row; 8] = [
    Row {
        setting: 0,
        architecture: "thin-age-net",
        key: "train_images_per_second",
        what: "train",
    },
    Row {
        setting: 0,
        architecture: "tiny-age-net",
        key: "train_images_per_second",
        what: "train",
    },
    Row {
        setting: 1,
        architecture: "thin-age-net",
        key: "train_images_per_second",
        what: "train",
    },
    Row {
        setting: 1,
        architecture: "tiny-age-net",
        key: "train_images_per_second",
        what: "train",
    },
    Row {
        setting: 2,
        architecture: "pretrained",
        key: "inference_images_per_second",
        what: "inference, as published",
    },
    Row {
        setting: 2,
        architecture: "pretrained",
        key: "inference_folded_images_per_second",
        what: "inference, affine layers folded",
    },
    Row {
        setting: 3,
        architecture: "pretrained",
        key: "inference_images_per_second",
        what: "inference, as published",
    },
    Row {
        setting: 3,
        architecture: "pretrained",
        key: "inference_folded_images_per_second",
        what: "inference, affine layers folded",
    },
];

/// Builds the trainer for `backend` and copies it aside, or says why it cannot be built.
fn build(backend: &Backend) -> Result<PathBuf> {
    if backend.features.contains(&"openblas") {
        ensure_openblas()?;
    }
    let mut command = cargo();
    command
        .args(["build", "--release", "-p", "trainer"])
        .args(backend.features);
    let what = format!(
        "building the trainer for {} (cargo build --release -p trainer {})",
        backend.name,
        backend.features.join(" ")
    );
    crate::run(&what, command)?;
    let aside = target_dir().join("bench-backends");
    std::fs::create_dir_all(&aside)
        .map_err(|e| format!("cannot create {}: {e}", aside.display()))?;
    let copy = aside.join(format!("trainer-{}", backend.device_features()));
    std::fs::copy(target_dir().join("release/trainer"), &copy)
        .map_err(|e| format!("cannot copy the trainer to {}: {e}", copy.display()))?;
    Ok(copy)
}

/// The system's OpenBLAS, which ndarray's `blas` links: Debian's libopenblas-dev, installed when
/// missing.
fn ensure_openblas() -> Result<()> {
    let found = [
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib/aarch64-linux-gnu",
        "/usr/lib",
    ]
    .iter()
    .any(|dir| PathBuf::from(dir).join("libopenblas.so").exists());
    if found {
        return Ok(());
    }
    crate::apt_install(
        "libopenblas-dev",
        "OpenBLAS",
        "install OpenBLAS's development files (Debian: `apt-get install libopenblas-dev`)",
    )
}

/// The installed OpenBLAS package's version, for the report.
fn openblas_version() -> String {
    crate::output(
        "dpkg-query",
        &["-W", "-f", "${Version}", "libopenblas0-pthread"],
    )
    .or_else(|| crate::output("dpkg-query", &["-W", "-f", "${Version}", "libopenblas0"]))
    .filter(|v| !v.trim().is_empty())
    .map_or_else(|| "?".to_string(), |v| v.trim().to_string())
}

fn parse(args: &[String]) -> Result<usize> {
    match args {
        [] => Ok(3),
        [flag, n] if flag == "--rounds" => n
            .parse()
            .ok()
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| "bench-backends: --rounds takes a whole number above 0".to_string()),
        _ => Err(format!(
            "bench-backends takes --rounds N; not `{}`",
            args.join(" ")
        )),
    }
}

pub fn bench_backends(args: &[String]) -> Result<()> {
    let rounds = parse(args)?;
    // Every binary first, so that no build runs while another backend is timed. A backend that
    // does not build is reported, not fatal: the others are still measured.
    let mut trainers: Vec<Built> = Vec::new();
    for backend in &BACKENDS {
        let same = trainers
            .iter()
            .find(|(other, _)| other.features == backend.features)
            .map(|(_, built)| built.clone());
        let built = same.unwrap_or_else(|| build(backend));
        if let Err(e) = &built {
            eprintln!("xtask: {} is left out: {e}", backend.name);
        }
        trainers.push((backend, built));
    }
    // reports[backend][setting]: one report per round.
    let settings = settings();
    let mut reports: Vec<Vec<Vec<Report>>> = vec![vec![Vec::new(); settings.len()]; BACKENDS.len()];
    let mut table = String::new();
    for round in 0..rounds {
        // The quick settings first, so that a run stopped early has the most rows.
        for (step, &si) in RUN_ORDER.iter().enumerate() {
            let s = &settings[si];
            eprintln!(
                "xtask: round {} of {rounds}: {} at {} px, batch {}",
                round + 1,
                s.architectures.join(", "),
                s.input_size,
                s.batch_size
            );
            // Each round starts with another backend, so that none always runs first.
            let n = trainers.len();
            for k in 0..n {
                let bi = (k + round) % n;
                let (backend, Ok(trainer)) = &trainers[bi] else {
                    continue;
                };
                reports[bi][si].push(run_burn(trainer, backend.device, s)?);
            }
            // Written after every setting, so that a run stopped early keeps what it measured.
            let done = round * settings.len() + step + 1;
            let last = done == rounds * settings.len();
            table = write_report(
                &trainers,
                &reports,
                &settings,
                rounds,
                (!last).then_some(done),
            )?;
        }
    }
    print!("{table}");
    eprintln!("xtask: wrote {}", report_path().display());
    Ok(())
}

fn report_path() -> PathBuf {
    workspace_root().join("bench/CPU_BACKENDS.md")
}

type Built<'a> = (&'a Backend, std::result::Result<PathBuf, String>);

/// Writes `bench/CPU_BACKENDS.md` from the reports so far, and returns it; `partial` is the
/// number of (round, setting) runs done when some are still to come.
fn write_report(
    trainers: &[Built],
    reports: &[Vec<Vec<Report>>],
    settings: &[Setting],
    rounds: usize,
    partial: Option<usize>,
) -> Result<String> {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "# burn's CPU backends side by side (`cargo xtask bench-backends`)\n\n\
         Machine: {}. Each backend is the same `trainer bench` (random u8 batches normalised on \
         the device; training: forward, KL + L1 loss, backward and Adam; inference: the forward \
         pass with the softmax, read back to the host), release builds: \
         {}. OpenBLAS: Debian's {} (its own threads, one per core). {rounds} round(s); each round \
         starts with another backend. Images per second: the median over the rounds, their \
         range in brackets; ratio = the backend ÷ flex (above 1: faster than flex).\n",
        machine(),
        trainers
            .iter()
            .enumerate()
            .map(|(bi, (backend, built))| match built {
                Ok(_) => format!(
                    "**{}** (`--device {}`, built with `{}`: {})",
                    backend.name,
                    backend.device,
                    backend.features.join(" "),
                    // The backend as the trainer describes it.
                    reports[bi][0]
                        .first()
                        .and_then(|r| r["device"].as_str())
                        .unwrap_or("?")
                ),
                Err(e) => format!("**{}**: not measured, {e}", backend.name),
            })
            .collect::<Vec<_>>()
            .join("; "),
        openblas_version()
    );
    if let Some(done) = partial {
        let _ = writeln!(
            table,
            "**Partial:** {done} of the run's {} settings × rounds measured so far (a run \
             in progress, or one stopped early); `–` marks a figure not measured yet.\n",
            rounds * settings.len()
        );
    }
    let measured: Vec<usize> = (0..BACKENDS.len())
        .filter(|&bi| trainers[bi].1.is_ok())
        .collect();
    let mut header = "| stream | input | batch | what |".to_string();
    let mut rule = "|---|---:|---:|---|".to_string();
    for &bi in &measured {
        header.push_str(&format!(" {} |", BACKENDS[bi].name));
        rule.push_str("---:|");
        if bi != 0 {
            header.push_str(" ratio |");
            rule.push_str("---:|");
        }
    }
    header.push_str(" fastest |");
    rule.push_str("---|");
    let _ = writeln!(table, "{header}\n{rule}");
    let mut wins = vec![0usize; BACKENDS.len()];
    for row in &ROWS {
        let s = &settings[row.setting];
        let values: Vec<Vec<f64>> = (0..BACKENDS.len())
            .map(|bi| figures(&reports[bi][row.setting], row.architecture, row.key))
            .collect();
        let _ = write!(
            table,
            "| {} | {} px | {} | {} |",
            row.architecture, s.input_size, s.batch_size, row.what
        );
        for &bi in &measured {
            let _ = write!(table, " {} |", cell(&values[bi]));
            if bi != 0 {
                let _ = write!(table, " **{}** |", ratio(&values[bi], &values[0]));
            }
        }
        let fastest = measured
            .iter()
            .copied()
            .filter(|&bi| median(&values[bi]).is_finite())
            .max_by(|&a, &b| median(&values[a]).total_cmp(&median(&values[b])));
        match fastest {
            Some(bi) => {
                wins[bi] += 1;
                let _ = writeln!(table, " {} |", BACKENDS[bi].name);
            }
            None => table.push_str(" – |\n"),
        }
    }
    let most = wins.iter().max().copied().unwrap_or(0);
    let _ = writeln!(
        table,
        "\nFastest in {most} of the {} rows: {}.\n",
        ROWS.len(),
        measured
            .iter()
            .filter(|&&bi| wins[bi] == most)
            .map(|&bi| BACKENDS[bi].name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        table,
        "Not measured: burn 0.22's `cpu` backend (CubeCL's CPU runtime through MLIR) builds \
         only with an LLVM bundle that its build script downloads from GitHub \
         (`tracel-llvm-bundler`), which this machine cannot reach; `tch` (LibTorch) runs \
         PyTorch's own kernels, which `cargo xtask bench-train` already measures directly; \
         burn 0.22 has no candle backend."
    );
    // A report being rewritten is never left half written.
    crate::fetch::write_atomically(&report_path(), table.as_bytes())?;
    Ok(table)
}
