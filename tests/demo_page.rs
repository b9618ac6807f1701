//! End to end: the built demo page (`dist/`, from `cargo xtask demo --build-only`) served on
//! 127.0.0.1 and opened in Debian's headless Chromium:
//! - it computes a label distribution with the `dldl` crate compiled to WebAssembly;
//! - with a fake camera playing a public-domain portrait, it reaches a live estimate of one face
//!   on WebGPU, and on the CPU backend when WebGPU is unavailable, and the two agree.

#[path = "support/page.rs"]
mod page;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use page::{built_page, live_report, live_report_from, open, portrait_clip, serve_dist};
use serde_json::Value;

/// The text of `<output id="ID">` in a dumped DOM.
fn output_value(dom: &str, id: &str) -> Option<f64> {
    let start = dom.find(&format!("<output id=\"{id}\">"))?;
    let rest = &dom[start..];
    let value = &rest[rest.find('>')? + 1..rest.find("</output>")?];
    value.trim().parse().ok()
}

#[test]
fn the_page_computes_a_label_distribution_in_webassembly() {
    let (address, _) = serve_dist();
    let profile = tempfile::tempdir().unwrap();
    let mut child = open(
        &format!("http://{address}/"),
        &["--disable-gpu", "--virtual-time-budget=30000", "--dump-dom"],
        profile.path(),
        Stdio::piped(),
    );
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("headless Chromium did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let dom = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    assert!(
        !dom.contains("<div id=\"status\" class=\"error\">"),
        "the page reports an error:\n{dom}"
    );
    // The sliders start at μ = 34, σ = 4: an interior label keeps its mean and spread.
    let mean = output_value(&dom, "mean").expect("E[age] shown");
    let std = output_value(&dom, "std").expect("standard deviation shown");
    assert!((mean - 34.0).abs() < 0.01, "E[age] {mean}");
    assert!((std - 4.0).abs() < 0.01, "σ {std}");
}

fn save_screenshot(report: &Value, name: &str) -> PathBuf {
    use base64::Engine;
    let data = report["screenshot"].as_str().unwrap_or_default();
    let png = base64::engine::general_purpose::STANDARD
        .decode(data.trim_start_matches("data:image/png;base64,"))
        .expect("the report holds a PNG screenshot");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

fn one_live_face(report: &Value, what: &str) -> f64 {
    let errors = report["errors"].as_array().unwrap();
    let faces = report["faces"].as_array().unwrap();
    assert_eq!(
        faces.len(),
        1,
        "{what}: expected one face box, got {report:#}"
    );
    let age = faces[0]["expected_age"].as_f64().unwrap();
    assert!((1.0..=100.0).contains(&age), "{what}: expected age {age}");
    assert_eq!(
        report["chartsBlank"], false,
        "{what}: the distribution was not drawn"
    );
    assert!(
        report["frames"].as_u64().unwrap() >= 5,
        "{what}: not live: {}",
        report["frames"]
    );
    eprintln!(
        "{what}: {age:.2} years after {} frames, {:.0} ms per frame, first estimate after {:.0} \
         ms, backend {}, notes {errors:?}",
        report["frames"],
        report["msPerFrame"].as_f64().unwrap_or(f64::NAN),
        report["firstEstimateMs"].as_f64().unwrap_or(f64::NAN),
        report["backend"]
    );
    assert!(
        report["firstEstimateMs"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0),
        "{what}: no time to the first estimate: {}",
        report["firstEstimateMs"]
    );
    age
}

#[test]
fn a_live_camera_gets_one_face_on_webgpu_and_on_the_cpu_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());

    let gpu = live_report(&clip, "", &["--enable-unsafe-webgpu"]);
    assert_eq!(gpu["backend"], "WebGPU", "{gpu:#}");
    let on_gpu = one_live_face(&gpu, "WebGPU");
    save_screenshot(&gpu, "demo-webgpu.png");

    // Without --enable-unsafe-webgpu headless Chromium offers no WebGPU: the page must say so and
    // fall back to burn's CPU backend.
    let cpu = live_report(
        &clip,
        "",
        &["--disable-gpu", "--disable-blink-features=WebGPU"],
    );
    assert!(
        cpu["backend"].as_str().unwrap().starts_with("CPU"),
        "{cpu:#}"
    );
    assert!(
        cpu["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("WebGPU")),
        "the page should say that WebGPU is missing: {cpu:#}"
    );
    let on_cpu = one_live_face(&cpu, "CPU fallback");
    save_screenshot(&cpu, "demo-cpu.png");
    assert!(
        (on_gpu - on_cpu).abs() <= 0.5,
        "WebGPU {on_gpu:.2} vs CPU {on_cpu:.2}"
    );
}

/// The `trainer` binary built beside this test (`cargo test --workspace` builds it).
fn trainer_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join(format!("trainer{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p trainer` (`cargo xtask test` does)",
        path.display()
    );
    path
}

fn run_trainer(args: &[&str]) {
    let out = std::process::Command::new(trainer_binary())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "trainer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A stream trained here on the synthetic set and exported into a temporary copy of the page's
/// weights folder (never into the real one) joins the fusion with its own curve.
#[test]
fn an_exported_stream_is_picked_up_without_code_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let data = dir.path().join("synth");
    let run = dir.path().join("run");
    run_trainer(&[
        "synth",
        "--out",
        &s(&data),
        "--train",
        "200",
        "--valid",
        "20",
        "--test",
        "0",
        "--image-size",
        "32",
        "--quiet",
    ]);
    run_trainer(&[
        "train",
        "--train",
        &s(&data.join("train.csv")),
        "--out",
        &s(&run),
        "--arch",
        "tiny-age-net",
        "--input-size",
        "32",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--quiet",
    ]);
    let page = dir.path().join("page");
    copy_tree(&built_page(), &page);
    run_trainer(&[
        "export",
        "--model",
        &s(&run),
        "--name",
        "test-synthetic",
        "--models",
        &s(&page.join("models")),
        "--allow-synthetic",
        "--device",
        "cpu",
    ]);

    let clip = portrait_clip(dir.path());
    let report = live_report_from(
        page,
        &clip,
        "",
        &["--disable-gpu", "--disable-blink-features=WebGPU"],
    );
    let fused = one_live_face(&report, "two streams");
    let streams = report["faces"][0]["streams"].as_array().unwrap();
    let names: Vec<&str> = streams
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pretrained", "test-synthetic"], "{report:#}");
    let ages: Vec<f64> = streams
        .iter()
        .map(|s| s["expected_age"].as_f64().unwrap())
        .collect();
    let (low, high) = (ages[0].min(ages[1]), ages[0].max(ages[1]));
    assert!(
        (low - 0.5..=high + 0.5).contains(&fused),
        "the fused estimate {fused:.2} lies outside the streams' {ages:?}"
    );
    save_screenshot(&report, "demo-two-streams.png");
}
