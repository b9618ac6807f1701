//! `cargo xtask bench-layers [options]`: one VGG-style stream's CPU training step layer by layer
//! (`cargo bench -p dldl --bench train_layers`, release build) beside PyTorch's
//! (`scripts/bench_pytorch.py --layers`), alternating the two in rounds, written to
//! `bench/TRAINING-cpu-layers.md`.

use std::{fmt::Write as _, process::Command};

use serde_json::Value;

use crate::{
    Result,
    bench::json_output,
    bench_train::{cell, median, python_with_torch, ratio},
    cargo,
    machine::machine,
    workspace_root,
};

const ARCHITECTURES: [&str; 4] = ["vgg16", "vgg16-bn", "thin-age-net", "tiny-age-net"];

struct Options {
    rounds: usize,
    architecture: String,
    input_size: usize,
    batch_size: usize,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        rounds: 3,
        architecture: "tiny-age-net".to_string(),
        input_size: 64,
        batch_size: 32,
    };
    let number = |flag: &str, value: Option<&String>| -> Result<usize> {
        value
            .and_then(|v| v.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| format!("bench-layers: {flag} takes a whole number above 0"))
    };
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1);
        match args[i].as_str() {
            "--rounds" => options.rounds = number("--rounds", value)?,
            "--input-size" => options.input_size = number("--input-size", value)?,
            "--batch-size" => options.batch_size = number("--batch-size", value)?,
            "--arch" => {
                options.architecture = value
                    .filter(|a| ARCHITECTURES.contains(&a.as_str()))
                    .ok_or_else(|| {
                        format!(
                            "bench-layers: --arch takes one of {}",
                            ARCHITECTURES.join(", ")
                        )
                    })?
                    .clone()
            }
            other => {
                return Err(format!(
                    "bench-layers takes --rounds, --arch, --input-size, --batch-size; not `{other}`"
                ));
            }
        }
        i += 2;
    }
    if options.input_size < 32 {
        return Err("bench-layers: --input-size: at least 32 (five 2×2 max-pools)".to_string());
    }
    Ok(options)
}

/// One figure (`key`, milliseconds) of layer `index` in each round's report.
fn figures(reports: &[Value], index: usize, key: &str) -> Vec<f64> {
    reports
        .iter()
        .filter_map(|r| r["layers"].get(index)?[key].as_f64())
        .collect()
}

pub fn bench_layers(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let python = python_with_torch()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let setting = [
        "--arch".to_string(),
        options.architecture.clone(),
        "--input-size".to_string(),
        options.input_size.to_string(),
        "--batch-size".to_string(),
        options.batch_size.to_string(),
    ];
    let burn_run = || {
        let mut command = cargo();
        command
            .args(["bench", "-q", "-p", "dldl", "--bench", "train_layers", "--"])
            .args(&setting);
        json_output("burn: cargo bench -p dldl --bench train_layers", command)
    };
    let torch_run = || {
        let mut command = Command::new(&python);
        command
            .arg(workspace_root().join("scripts/bench_pytorch.py"))
            .args([
                "--layers",
                "--device",
                "cpu",
                "--threads",
                &threads.to_string(),
            ])
            .args(&setting);
        json_output("scripts/bench_pytorch.py --layers", command)
    };
    let (mut burn, mut torch) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        eprintln!(
            "xtask: bench-layers round {} of {}",
            round + 1,
            options.rounds
        );
        if round % 2 == 0 {
            burn.push(burn_run()?);
            torch.push(torch_run()?);
        } else {
            torch.push(torch_run()?);
            burn.push(burn_run()?);
        }
    }
    let layers = burn[0]["layers"].as_array().cloned().unwrap_or_default();
    let torch_layers = torch[0]["layers"].as_array().map_or(0, Vec::len);
    if layers.is_empty() || layers.len() != torch_layers {
        return Err(format!(
            "bench-layers: burn timed {} layers and PyTorch {torch_layers}; they should agree",
            layers.len()
        ));
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "# A CPU training step layer by layer, beside PyTorch (`cargo xtask bench-layers`)\n"
    );
    let _ = writeln!(
        table,
        "Machine: {}. {}, {} px, batch {}. burn: `cargo bench -p dldl --bench train_layers` \
         (release build), {}, {threads} threads. PyTorch: `scripts/bench_pytorch.py --layers`, {}.\n",
        machine(),
        options.architecture,
        options.input_size,
        options.batch_size,
        burn[0]["runtime"].as_str().unwrap_or("burn"),
        torch[0]["runtime"].as_str().unwrap_or("PyTorch"),
    );
    let _ = writeln!(
        table,
        "Each figure is one layer's forward and backward pass on a random batch, in milliseconds \
         (backward through a random weighting of the output, so that the gradient is dense). \
         conv: the 3×3 convolution, input and weight gradients, as the trainer runs it (burn: \
         bias-free convolutions of 16 × 16 and up take the shifted weight gradient); BN: batch norm in training mode; \
         pool: the stage's 2×2 max-pool, where one follows. \"w-grad\": the convolution's \
         weight gradient alone (burn: `conv2d_weight_backward`, which burn 0.22 computes as a \
         convolution of the input by the output gradient, the trainer's below 16 × 16; PyTorch: `torch.nn.grad.conv2d_weight`); \
         \"shifted\": the same gradient in burn as nine shifted batched matrix products \
         (`dldl::networks::conv_grad::weight_grad_shifted`, checked against burn's to 1e-4). Each is the \
         median over at least 0.4 s of calls, then the median over the rounds, their range in \
         brackets; {}. ratio = burn ÷ PyTorch in time (above 1: burn is slower). \"×n\": \
         layers of that shape in the stream; the totals count each.\n",
        match options.rounds {
            1 => "one round, burn first".to_string(),
            n => format!("{n} rounds alternate which runtime goes first"),
        }
    );
    let _ = writeln!(
        table,
        "| layer | conv, burn | PyTorch | ratio | BN, burn | PyTorch | ratio | ReLU, burn | \
         PyTorch | pool, burn | PyTorch | w-grad, burn | shifted | PyTorch |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let keys = ["conv", "batch_norm", "relu", "pool"];
    let mut totals = [[0.0f64; 2]; 4];
    for (i, layer) in layers.iter().enumerate() {
        let count = layer["count"].as_u64().unwrap_or(1);
        let name = format!(
            "{}→{}, {} px{}",
            layer["in_channels"],
            layer["out_channels"],
            layer["size"],
            if count > 1 {
                format!(" ×{count}")
            } else {
                String::new()
            }
        );
        let mut cells = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            let (b, t) = (figures(&burn, i, key), figures(&torch, i, key));
            // The pool runs once per stage, whatever the count.
            let times = if *key == "pool" { 1.0 } else { count as f64 };
            if !b.is_empty() {
                totals[k][0] += median(&b) * times;
            }
            if !t.is_empty() {
                totals[k][1] += median(&t) * times;
            }
            cells.push(cell(&b));
            cells.push(cell(&t));
            if k < 2 {
                cells.push(ratio(&b, &t));
            }
        }
        for key in ["weight_grad", "weight_grad_shifted"] {
            cells.push(cell(&figures(&burn, i, key)));
        }
        cells.push(cell(&figures(&torch, i, "weight_grad")));
        let _ = writeln!(table, "| {name} | {} |", cells.join(" | "));
    }
    let total = |side: usize| totals.iter().map(|t| t[side]).sum::<f64>();
    let _ = writeln!(
        table,
        "\nTotals over the stream's convolution blocks (ms per step, forward and backward): \
         burn {:.0} (conv {:.0}, BN {:.0}, ReLU {:.0}, pool {:.0}), PyTorch {:.0} (conv {:.0}, \
         BN {:.0}, ReLU {:.0}, pool {:.0}): burn takes {:.2}× PyTorch's time. Left out: the \
         input's normalisation, the head, the loss and Adam.",
        total(0),
        totals[0][0],
        totals[1][0],
        totals[2][0],
        totals[3][0],
        total(1),
        totals[0][1],
        totals[1][1],
        totals[2][1],
        totals[3][1],
        total(0) / total(1),
    );
    print!("{table}");
    let path = workspace_root().join("bench/TRAINING-cpu-layers.md");
    std::fs::write(&path, &table).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}
