//! End to end: the built demo page (`dist/`, from `cargo xtask demo --build-only`) served on
//! 127.0.0.1 by the demo's own server and opened in Debian's headless Chromium:
//! - the README's first command itself, `cargo xtask demo`, serves a page that starts and shows
//!   a live estimate, as a visitor sees it (through chromedriver);
//! - it computes a label distribution with the `dldl` crate compiled to WebAssembly;
//! - with a fake camera playing a public-domain portrait, it reaches a live estimate of one face
//!   on WebGPU, and on the CPU backend when WebGPU is unavailable, and the two agree;
//! - exported streams join the fusion; damaged ones are said, file by file, and left out; when
//!   none is left, the published network (fetched only then) runs alone;
//! - a server that answers missing files with the page itself does not stop it;
//! - it requests its own files and nothing else (the server's log and the browser's resource
//!   timing), none once it estimates, and its Content-Security-Policy refuses any other.

mod support;

#[path = "support/page.rs"]
mod page;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, MutexGuard, mpsc},
    time::{Duration, Instant},
};

use page::{
    Browser, Seen, built_page, live_report, live_report_from, portrait_clip, serve_dist,
    workspace_root,
};
use serde_json::Value;
use support::{
    repo::copy_tree,
    trainer::{ok, synthetic_stream},
};

/// `cargo xtask demo` rebuilds `dist/`, which the other tests serve: one at a time.
static DIST: Mutex<()> = Mutex::new(());

fn dist_lock() -> MutexGuard<'static, ()> {
    DIST.lock().unwrap_or_else(|e| e.into_inner())
}

/// The page's stream index, `models/streams/index.json`, as JSON.
fn stream_index(page: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(page.join("models/streams/index.json")).unwrap()).unwrap()
}

/// A copy of the built page in `dir/page`, taken while no test rebuilds it, for a test to change.
fn page_copy(dir: &Path) -> PathBuf {
    let page = dir.join("page");
    let _dist = dist_lock();
    copy_tree(&built_page(), &page);
    page
}

/// The text of `<output id="ID">` in a dumped DOM.
#[test]
fn the_page_computes_a_label_distribution_in_webassembly() {
    let _dist = dist_lock();
    let (address, _) = serve_dist();
    let browser = Browser::start(&page::NO_WEBGPU.map(String::from))
        .unwrap_or_else(|e| panic!("cannot drive Chromium: {e}"));
    browser.open(&format!("http://{address}/")).unwrap();
    // Computed in the page's worker by the `dldl` crate; the sliders start at μ = 34, σ = 4.
    let started = Instant::now();
    let shown = loop {
        let shown = browser
            .run(
                "const $ = (id) => document.getElementById(id); \
                 return [$('mean').textContent, $('std').textContent, $('status').className, \
                 $('status').textContent];",
            )
            .unwrap();
        if shown[0].as_str().is_some_and(|m| !m.is_empty()) || shown[2] == "error" {
            break shown;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no label distribution shown: {shown}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_ne!(shown[2], "error", "the page reports an error: {shown}");
    let value = |i: usize| shown[i].as_str().unwrap().parse::<f64>().unwrap();
    let (mean, std) = (value(0), value(1));
    // An interior label keeps its mean and spread.
    assert!((mean - 34.0).abs() < 0.01, "E[age] {mean}");
    assert!((std - 4.0).abs() < 0.01, "σ {std}");
    // Moved, the slider's new label is computed again.
    browser
        .run(
            "const m = document.getElementById('mu'); m.value = '0'; \
             m.dispatchEvent(new Event('input'));",
        )
        .unwrap();
    let started = Instant::now();
    loop {
        let mean = browser
            .run("return document.getElementById('mean').textContent")
            .unwrap();
        let mean: f64 = mean.as_str().unwrap().parse().unwrap();
        // At the edge the Gaussian is cut at 0 and renormalised: its mean moves inside.
        if mean > 0.5 && mean < 10.0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "E[age] at μ = 0: {mean}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the page said: its errors and notes, one line each.
fn said(report: &Value) -> Vec<&str> {
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
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
    let _dist = dist_lock();
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());

    // Headless Chromium's WebGPU is SwiftShader, a software adapter: asked for by hand, it runs.
    let gpu = live_report(&clip, "&backend=webgpu", &["--enable-unsafe-webgpu"]);
    assert_eq!(gpu["backend"], "WebGPU", "{gpu:#}");
    let on_gpu = one_live_face(&gpu, "WebGPU");
    save_screenshot(&gpu, "demo-webgpu.png");
    estimating_runs_off_the_page_thread(&gpu, "WebGPU");

    // Without --enable-unsafe-webgpu headless Chromium offers no WebGPU: the page must say so and
    // fall back to burn's CPU backend.
    let cpu = live_report(&clip, "", &page::NO_WEBGPU);
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
    estimating_runs_off_the_page_thread(&cpu, "CPU fallback");
    only_new_camera_frames_are_estimated(&cpu);
    assert!(
        (on_gpu - on_cpu).abs() <= 0.5,
        "WebGPU {on_gpu:.2} vs CPU {on_cpu:.2}"
    );
}

/// The CPU backend runs on every core but one (at least one thread, at most 8) when the page is
/// cross-origin isolated, as `cargo xtask demo` serves it; from the standard module on one
/// thread when asked (`?threads=0`) or when served without the isolation headers, and then it
/// says why. The estimate is the same either way.
#[test]
fn the_cpu_backend_runs_on_every_core_when_the_page_is_cross_origin_isolated() {
    let _dist = dist_lock();
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let expected = cores.saturating_sub(1).clamp(1, 8) as u64;

    // Two threads where the machine has one core or two: the pool works, whatever the default.
    let threaded = live_report(
        &clip,
        &format!("&backend=cpu&threads={}", expected.max(2)),
        &page::NO_WEBGPU,
    );
    let default = live_report(&clip, "&backend=cpu", &page::NO_WEBGPU);
    assert_eq!(default["threads"], expected, "{:#}", default["threadsWhy"]);
    let expected = expected.max(2);
    assert_eq!(threaded["backend"], "CPU", "{threaded:#}");
    assert_eq!(
        threaded["threads"], expected,
        "the CPU backend should run on the {expected} threads asked for: {:#}",
        threaded["threadsWhy"]
    );
    let on_threads = one_live_face(&threaded, "CPU, threads");
    estimating_runs_off_the_page_thread(&threaded, "CPU, threads");

    let one = live_report(&clip, "&backend=cpu&threads=0", &page::NO_WEBGPU);
    assert_eq!(one["threads"], 1, "{one:#}");
    assert!(
        one["threadsWhy"]
            .as_str()
            .is_some_and(|w| w.contains("threads=0")),
        "{:#}",
        one["threadsWhy"]
    );
    let on_one = one_live_face(&one, "CPU, the standard module");
    assert!(
        (on_threads - on_one).abs() <= 0.05,
        "{expected} threads {on_threads:.3} against the standard module {on_one:.3}"
    );

    // A static host without the headers: no shared memory, one thread, said on the page.
    let listener = page::serve::Listener::bind(0).unwrap().without_isolation();
    let address = listener.address;
    let (log, logged) = mpsc::channel();
    listener.serve(built_page(), Some(log));
    let plain = page::live_session_at(
        address,
        logged,
        &clip,
        "&backend=cpu",
        &page::NO_WEBGPU,
        &page::Wait::default(),
    );
    let report = &plain.report;
    assert_eq!(report["threads"], 1, "{report:#}");
    let why = plain
        .browser
        .run("return document.getElementById('backend-why').textContent")
        .unwrap();
    assert!(
        why.as_str()
            .is_some_and(|w| w.contains("one thread") && w.contains("cross-origin isolated")),
        "the page should say why it runs on one thread: {why}"
    );
    let plain_age = one_live_face(report, "CPU, not isolated");
    assert!(
        (plain_age - on_one).abs() <= 1e-3,
        "not isolated {plain_age:.3} against the standard module {on_one:.3}"
    );
}

/// The estimator works in a worker, never on the page's thread: the page's own thread fetched
/// no WebAssembly (the estimator is nothing else; the worker's fetches are in its own timeline),
/// yet estimates came back. How long the page's tasks took is the benchmark's to record
/// (`cargo xtask bench-page`, `bench/DEMO_PAGE.md`): a duration depends on how busy the machine
/// is, so it decides no test; it is printed here for the log.
fn estimating_runs_off_the_page_thread(report: &Value, what: &str) {
    let fetched = report["pageWasm"]
        .as_array()
        .expect("the report lists the page's WebAssembly fetches");
    assert!(
        fetched.is_empty(),
        "{what}: the page's own thread fetched WebAssembly: {fetched:?}"
    );
    assert!(
        report["frames"].as_u64().unwrap_or(0) >= 1,
        "{what}: no estimate came back from the worker"
    );
    let longest = report["longTasks"]
        .as_array()
        .expect("the page keeps its long tasks")
        .iter()
        .filter(|t| t["camera"] == true)
        .filter_map(|t| t["ms"].as_f64())
        .fold(0.0f64, f64::max);
    eprintln!(
        "{what}: the page's longest task while the camera ran: {longest:.0} ms (over 50 ms counts; 0: none)"
    );
}

/// A frame is estimated once, when the camera gives it; frames that arrive while the worker is
/// busy replace each other rather than queue.
fn only_new_camera_frames_are_estimated(report: &Value) {
    let count = |key: &str| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {report:#}"))
    };
    let (estimated, seen, replaced) = (count("frames"), count("videoFrames"), count("replaced"));
    assert!(
        estimated + replaced <= seen + 1 && estimated <= seen,
        "{estimated} frames estimated and {replaced} replaced out of {seen} camera frames"
    );
    assert_eq!(
        report["cameraRuns"], 1,
        "one camera run, never two: {report:#}"
    );
}

/// Where the only WebGPU adapter is a software one (headless Chromium's SwiftShader), the page
/// chooses the CPU backend by itself, says why, and a visitor can still switch to WebGPU by hand.
#[test]
fn a_software_webgpu_adapter_never_wins_by_default() {
    let _dist = dist_lock();
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());
    let wait = page::Wait {
        frames: 2,
        ..page::Wait::default()
    };
    let session = page::live_session(
        page::built_page(),
        &clip,
        "",
        &["--enable-unsafe-webgpu"],
        &wait,
    );
    let report = &session.report;
    assert_eq!(report["backend"], "CPU", "{report:#}");
    let reason = report["backendReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("software") && reason.contains("by hand"),
        "the page should say that the adapter is a software one: {reason}"
    );
    assert!(
        report["adapter"]
            .as_str()
            .is_some_and(|a| a.to_lowercase().contains("swiftshader")),
        "{report:#}"
    );
    let shown = session
        .browser
        .run("return document.getElementById('backend-why').textContent")
        .unwrap();
    assert!(
        shown
            .as_str()
            .is_some_and(|s| s.contains("software") && !s.contains('\n')),
        "the page shows the reason in one line: {shown}"
    );
    // Switched by hand, the same page runs on WebGPU, without downloading the weights again.
    session
        .browser
        .run(
            "const c = document.getElementById('backend-choice'); c.value = 'webgpu'; \
             c.dispatchEvent(new Event('change'));",
        )
        .unwrap();
    let started = Instant::now();
    let switched = loop {
        let backend = session
            .browser
            .run("return window.ageDemo.state.backend")
            .unwrap();
        if backend == "WebGPU" {
            break backend;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "still on {backend}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(switched, "WebGPU");
    let mut weights = std::collections::BTreeMap::new();
    for request in session.log.try_iter() {
        if [".onnx", ".bin", ".bpk"]
            .iter()
            .any(|e| request.target.ends_with(e))
        {
            *weights.entry(request.target).or_insert(0) += 1;
        }
    }
    assert!(
        weights.keys().any(|t| t.ends_with("weights.bpk")),
        "{weights:?}"
    );
    assert!(
        weights.values().all(|&n| n == 1),
        "a weights file was downloaded again: {weights:?}"
    );
}

/// What the page's state says now, with the messages it shows and its status line.
fn page_state(browser: &Browser) -> Value {
    let text = browser
        .run(
            "const s = window.ageDemo.state; return JSON.stringify({ ...s, \
             shown: Array.from(document.querySelectorAll('#message > *')).map((m) => m.textContent), \
             status: document.getElementById('status').textContent });",
        )
        .unwrap();
    serde_json::from_str(text.as_str().unwrap()).unwrap()
}

/// Polls the page until `done` holds; fails naming `what` after two minutes.
fn until(browser: &Browser, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let state = page_state(browser);
        if done(&state) {
            return state;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: {:#}",
            serde_json::json!({"shown": state["shown"], "status": state["status"],
                "frames": state["frames"], "restarts": state["restarts"]})
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn shown(state: &Value) -> Vec<String> {
    state["shown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_string())
        .collect()
}

/// The page under what a visitor can do wrong, live on the CPU backend: each mishap is said in
/// one line naming it and what to do, and the page goes on.
#[test]
fn bad_input_on_the_live_page_is_said_in_one_line_and_the_page_goes_on() {
    let _dist = dist_lock();
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());
    let wait = page::Wait {
        frames: 3,
        ..page::Wait::default()
    };
    let session = page::live_session(built_page(), &clip, "&backend=cpu", &page::NO_WEBGPU, &wait);
    let b = &session.browser;
    let frames = |state: &Value| state["frames"].as_u64().unwrap();

    // "Start the camera" pressed twice more while the camera runs: still one estimation loop.
    b.run("const c = document.getElementById('camera'); c.disabled = false; c.click(); c.click();")
        .unwrap();
    let before = frames(&page_state(b));
    let state = until(b, "the camera goes on", |s| frames(s) >= before + 5);
    assert_eq!(state["cameraRuns"], 1, "a second loop started");
    only_new_camera_frames_are_estimated(&state);

    // The worker fails (the error event a crash or an out-of-memory abort fires): one line, a
    // new worker on the weights already downloaded, and the estimates go on.
    b.run("window.ageDemo.worker.dispatchEvent(new ErrorEvent('error', { message: 'it ran out of memory' }))")
        .unwrap();
    let before = frames(&page_state(b));
    let state = until(b, "estimating again after the worker failed", |s| {
        s["restarts"] == 1 && frames(s) >= before + 3
    });
    let said = shown(&state);
    assert!(
        said.iter()
            .any(|m| m.contains("it ran out of memory") && m.contains("started again")),
        "{said:?}"
    );

    // The camera ends (unplugged): said, and the loop stops.
    b.run(
        "document.getElementById('video').srcObject.getVideoTracks()[0]\
         .dispatchEvent(new Event('ended'));",
    )
    .unwrap();
    let state = until(b, "the camera's end said", |s| {
        shown(s).iter().any(|m| m.contains("The camera stopped"))
    });
    std::thread::sleep(Duration::from_millis(1500));
    let later = page_state(b);
    assert!(
        frames(&later) <= frames(&state) + 1,
        "frames went on after the camera ended: {} then {}",
        frames(&state),
        frames(&later)
    );

    // Photos: a 1×1 PNG, a text file, and the portrait at 10 000×10 000 px.
    let tiny = dir.path().join("tiny.png");
    image::RgbImage::from_pixel(1, 1, image::Rgb([200, 120, 90]))
        .save(&tiny)
        .unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "not an image\n").unwrap();
    let huge = dir.path().join("huge.png");
    {
        let big = image::imageops::resize(
            &page::grace_hopper(),
            10_000,
            10_000,
            image::imageops::FilterType::Nearest,
        );
        let file = std::io::BufWriter::new(std::fs::File::create(&huge).unwrap());
        let encoder = image::codecs::png::PngEncoder::new_with_quality(
            file,
            image::codecs::png::CompressionType::Fast,
            // Rows of repeated pixels: the Sub filter makes them mostly zeros.
            image::codecs::png::FilterType::Sub,
        );
        image::ImageEncoder::write_image(
            encoder,
            big.as_raw(),
            10_000,
            10_000,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    }
    let photo = |file: &Path, count: u64| {
        b.choose_file("#photo", file).unwrap();
        until(b, "the photo answered", |s| s["photos"] == count)
    };
    for (file, count, expected) in [
        (&tiny, 1, "tiny.png is 1×1 px, too small to hold a face"),
        (&text, 2, "notes.txt is not an image"),
    ] {
        let state = photo(file, count);
        let said = shown(&state);
        assert!(
            said.len() == 1 && said[0].contains(expected) && !said[0].contains('\n'),
            "{said:?}"
        );
        assert!(
            state["status"]
                .as_str()
                .unwrap()
                .starts_with("No estimate for"),
            "{state:#}"
        );
    }
    let state = photo(&huge, 3);
    assert_eq!(
        state["photoScaledFrom"],
        serde_json::json!([10_000, 10_000]),
        "{:?}, {}",
        shown(&state),
        state["status"]
    );
    let faces = state["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{:?}", shown(&state));
    let age = faces[0]["expected_age"].as_f64().unwrap();
    assert!(
        (60.0..=90.0).contains(&age),
        "the 10 000 px portrait: {age}"
    );
    let said = shown(&state);
    assert!(
        said.iter()
            .any(|m| m.contains("10000×10000 px: it was estimated at 640×640")),
        "{said:?}"
    );

    // And the camera starts again after all that.
    let before = frames(&state);
    b.run("document.getElementById('camera').click()").unwrap();
    let state = until(b, "the camera started again", |s| {
        s["cameraRuns"] == 2 && frames(s) >= before + 2
    });
    assert!(
        state["faces"].as_array().is_some_and(|f| f.len() == 1),
        "{state:#}"
    );
}

/// Three faces side by side in a 640×480 camera frame: three boxes, three tracks; once they have
/// settled, the age network runs on fewer faces than are shown (the settled-track rule).
#[test]
fn three_faces_side_by_side_get_three_tracks() {
    let _dist = dist_lock();
    let dir = tempfile::tempdir().unwrap();
    let clip = page::faces_clip(dir.path(), 3);
    let wait = page::Wait {
        frames: 12,
        ..page::Wait::default()
    };
    let report =
        page::live_session(built_page(), &clip, "&backend=cpu", &page::NO_WEBGPU, &wait).report;
    let faces = report["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 3, "{:#}", report["faces"]);
    let mut tracks: Vec<u64> = faces.iter().map(|f| f["track"].as_u64().unwrap()).collect();
    tracks.sort_unstable();
    tracks.dedup();
    assert_eq!(tracks.len(), 3, "each face its own track: {tracks:?}");
    for face in faces {
        let age = face["expected_age"].as_f64().unwrap();
        assert!(
            (60.0..=90.0).contains(&age),
            "the same portrait three times: {age}"
        );
    }
    let (ran, shown) = (
        report["networkFaces"].as_u64().unwrap(),
        report["seenFaces"].as_u64().unwrap(),
    );
    assert_eq!(report["every"], 3);
    assert!(ran < shown, "the network ran on {ran} of {shown} faces");
    assert!(
        ran >= 3 * 5,
        "every face gets the network on its first five frames: {ran}"
    );
}

/// A stream trained here on the synthetic set and exported into a temporary copy of the page's
/// weights folder (never into the real one) joins the fusion with its own curve.
#[test]
fn an_exported_stream_is_picked_up_without_code_changes() {
    let dir = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let run = synthetic_stream(dir.path(), 200, 20, 2, &[]);
    let page = page_copy(dir.path());
    ok(&[
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

    // Beside it, exported streams that cannot run: the page must say so, file by file, and go
    // on with the streams that loaded.
    let streams = page.join("models/streams");
    let html = std::fs::read(page.join("index.html")).unwrap();
    let good = streams.join("test-synthetic");
    for broken in ["html-card", "short-weights", "html-weights", "nan-weights"] {
        copy_tree(&good, &streams.join(broken));
    }
    std::fs::write(streams.join("html-card/stream.json"), &html).unwrap();
    let weights = std::fs::read(good.join("weights.bpk")).unwrap();
    std::fs::write(
        streams.join("short-weights/weights.bpk"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    std::fs::write(streams.join("html-weights/weights.bpk"), &html).unwrap();
    // Every weight NaN (f16 0xFFFF), as a run that diverged leaves them: burn-pack's tensor
    // data starts at the 256-byte boundary after its 10-byte header and its metadata.
    let mut nan = weights.clone();
    let metadata = u32::from_le_bytes(nan[6..10].try_into().unwrap()) as usize;
    let data = (10 + metadata).div_ceil(256) * 256;
    nan[data..].fill(0xff);
    std::fs::write(streams.join("nan-weights/weights.bpk"), &nan).unwrap();
    let mut card: Value =
        serde_json::from_slice(&std::fs::read(good.join("stream.json")).unwrap()).unwrap();
    assert!(
        card["weights_bytes"].as_u64() == Some(weights.len() as u64),
        "export records the weights' size: {card:#}"
    );
    card.as_object_mut().unwrap().remove("weights_bytes");
    std::fs::write(
        streams.join("html-weights/stream.json"),
        serde_json::to_vec(&card).unwrap(),
    )
    .unwrap();
    std::fs::write(
        streams.join("index.json"),
        r#"{"streams": ["no-card", "test-synthetic", "html-card", "short-weights", "html-weights", "nan-weights"]}"#,
    )
    .unwrap();

    let clip = portrait_clip(dir.path());
    let report = live_report_from(page, &clip, "", &page::NO_WEBGPU);
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

    let said = said(&report);
    for (file, what) in [
        ("models/streams/no-card/stream.json", "is missing"),
        ("models/streams/html-card/stream.json", "is missing"),
        ("models/streams/short-weights/weights.bpk", "arrived short"),
        ("models/streams/html-weights/weights.bpk", "HTML"),
        ("models/streams/nan-weights/weights.bpk", "NaN"),
    ] {
        let folder = file.split('/').nth(2).unwrap();
        assert!(
            said.iter().any(|m| m.starts_with(file)
                && m.contains(what)
                && m.contains(&format!("trainer export --name {folder}"))),
            "the page should say that {file} {what}, and what to run: {said:#?}"
        );
    }
}

/// Shipped streams whose weights were damaged on the way (the right size, another byte) are
/// each said in one line; the page then fetches the published network, which it leaves out
/// while the streams run, and estimates with it alone.
#[test]
fn damaged_shipped_streams_leave_the_published_network_running() {
    let dir = tempfile::tempdir().unwrap();
    let page = page_copy(dir.path());
    let streams = page.join("models/streams");
    let index = stream_index(&page);
    assert_eq!(index["pretrained_weight"], 0.0, "{index}");
    let mut damaged = Vec::new();
    for folder in index["streams"].as_array().unwrap() {
        let folder = folder.as_str().unwrap();
        let file = streams.join(folder).join("weights.bpk");
        let mut bytes = std::fs::read(&file).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
        damaged.push(format!("models/streams/{folder}/weights.bpk"));
    }
    let clip = portrait_clip(dir.path());
    let report = live_report_from(page, &clip, "", &page::NO_WEBGPU);
    one_live_face(&report, "the published network alone");
    let names: Vec<&str> = report["faces"][0]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pretrained"], "{report:#}");
    let said = said(&report);
    for file in &damaged {
        assert!(
            said.iter().any(|m| m.starts_with(file.as_str())
                && m.contains("not the file this build was made for")
                && !m.contains('\n')),
            "the page should say that {file} is damaged, in one line: {said:#?}"
        );
    }
}

/// Every request the page makes is a GET of one of its own files, the weights come last, and
/// none comes while it estimates: the server's log and the browser's resource timing agree. Its
/// Content-Security-Policy refuses a request to another server even from a script run in the
/// page (here, injected through WebDriver).
#[test]
fn the_page_requests_its_own_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());
    let root = page_copy(dir.path());
    let html = std::fs::read_to_string(root.join("index.html")).unwrap();
    assert!(
        html.contains("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self';")
            && !html.contains("unsafe-inline"),
        "the built page has no policy limiting it to its own files"
    );
    let wait = page::Wait {
        frames: 1,
        ..page::Wait::default()
    };
    let session = page::live_session(root.clone(), &clip, "", &page::NO_WEBGPU, &wait);
    assert!(
        session.report["faces"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        "the page estimated no face: {:#}",
        session.report["errors"]
    );
    let loading: Vec<page::serve::Logged> = session.log.try_iter().collect();
    // Ten more frames, and a moment for anything sent after them.
    let frames = |b: &Browser| {
        b.run("return window.ageDemo.state.frames")
            .unwrap()
            .as_u64()
            .unwrap_or(0)
    };
    let first = frames(&session.browser);
    let started = Instant::now();
    while frames(&session.browser) < first + 10 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the camera stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    let later: Vec<String> = session
        .log
        .try_iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert!(later.is_empty(), "requests while estimating: {later:?}");
    assert!(loading.len() >= 5, "{loading:?}");
    // The weights and the module the worker runs are the last things the page asks for:
    // nothing between them and the camera.
    assert!(
        loading
            .last()
            .is_some_and(|r| r.target.starts_with("/models/")
                || r.target.ends_with(".wasm")
                || r.target.ends_with(".js")),
        "the last request before estimating: {:?}",
        loading.last()
    );
    assert!(
        loading.iter().any(|r| r.target == "/worker.js")
            && loading.iter().any(|r| r.target.ends_with(".wasm")),
        "the worker and its module were not loaded from the page's server: {loading:?}"
    );
    for request in &loading {
        assert_eq!(request.method, "GET", "{request:?}");
        // The stream index is asked for whether or not a stream was exported (a 404 then).
        assert!(
            page::serve::file_for(&root, &request.target).is_some_and(|f| f.is_file())
                || request.target == "/models/streams/index.json",
            "{} is not one of the page's files",
            request.target
        );
    }
    let origin = format!("http://{}/", session.address);
    let fetched = session
        .browser
        .run("return performance.getEntriesByType('resource').map((e) => e.name)")
        .unwrap();
    let fetched: Vec<&str> = fetched
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The shipped streams' weights are fetched; the published network's only when the fusion
    // gives it weight.
    let index = stream_index(&root);
    let published = index["pretrained_weight"].as_f64().is_none_or(|w| w > 0.0);
    assert!(
        fetched.iter().any(|u| u.ends_with("/weights.bpk")),
        "{fetched:?}"
    );
    assert_eq!(
        fetched.iter().any(|u| u.ends_with("models/age-v1.onnx")),
        published,
        "the published network's weight is {}: {fetched:?}",
        index["pretrained_weight"]
    );
    for url in &fetched {
        let target = url.strip_prefix(origin.trim_end_matches('/'));
        assert!(
            target.is_some_and(|t| loading.iter().any(|r| r.target == t)),
            "the browser fetched {url}, which the page's server never served"
        );
    }

    // Anything else is refused by the policy, before it leaves the browser.
    let (other, other_log) = page::serve_folder(dir.path().to_path_buf());
    let outcome = session
        .browser
        .run_async(&format!(
            "const done = arguments[arguments.length - 1]; \
             fetch('http://{other}/leak', {{ method: 'POST', body: 'a frame' }}) \
               .then(() => done('sent'), (e) => done('refused: ' + e.message));"
        ))
        .unwrap();
    assert!(
        outcome.as_str().is_some_and(|o| o.starts_with("refused")),
        "{outcome}"
    );
    // The estimator's worker is started from a blob, so it carries the page's policy: a worker
    // started that way is refused too.
    let outcome = session
        .browser
        .run_async(&format!(
            "const done = arguments[arguments.length - 1]; \
             const code = \"fetch('http://{other}/leak', {{ method: 'POST', body: 'a frame' }})\
               .then(() => postMessage('sent'), (e) => postMessage('refused: ' + e.message));\"; \
             const w = new Worker(URL.createObjectURL(new Blob([code], {{ type: 'text/javascript' }})), \
               {{ type: 'module' }}); \
             w.onmessage = (m) => done(m.data); w.onerror = (e) => done('refused: ' + e.message);"
        ))
        .unwrap();
    assert!(
        outcome.as_str().is_some_and(|o| o.starts_with("refused")),
        "from a worker: {outcome}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let leaked: Vec<page::serve::Logged> = other_log.try_iter().collect();
    assert!(leaked.is_empty(), "another server got {leaked:?}");
}

/// A server that answers every missing file with the page itself (as `trunk serve` does) hands
/// the page HTML for `models/streams/index.json`: the page must take it for what it is, no
/// exported stream, and start.
#[test]
fn an_html_page_in_place_of_the_stream_index_is_no_exported_stream() {
    let dir = tempfile::tempdir().unwrap();
    let page = page_copy(dir.path());
    let streams = page.join("models/streams");
    let _ = std::fs::remove_dir_all(&streams);
    std::fs::create_dir_all(&streams).unwrap();
    std::fs::copy(page.join("index.html"), streams.join("index.json")).unwrap();
    let clip = portrait_clip(dir.path());
    let report = live_report_from(page, &clip, "", &page::NO_WEBGPU);
    one_live_face(&report, "HTML for the stream index");
    let said = said(&report);
    assert!(
        said.iter().all(|m| m.contains("WebGPU")),
        "only the missing WebGPU may be said: {said:#?}"
    );
}

#[test]
fn a_missing_browser_or_driver_is_said_in_one_line_at_once() {
    // Both return before anything is started: no wait for chromedriver's port.
    let no_chromium = Browser::start_with(None, "chromedriver", &[])
        .err()
        .unwrap();
    let no_driver = Browser::start_with(
        page::chromium().or(Some("chromium".to_string())),
        "/nonexistent/chromedriver",
        &[],
    )
    .err()
    .unwrap();
    for (message, names) in [(&no_chromium, "chromium"), (&no_driver, "chromium-driver")] {
        assert!(!message.contains('\n'), "more than one line: {message}");
        assert!(
            message.contains(names) && message.contains("cargo xtask test"),
            "{message}"
        );
    }
    assert!(
        no_driver.contains("/nonexistent/chromedriver"),
        "{no_driver}"
    );
}

/// A free port on 127.0.0.1 (free when asked; the demo binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `cargo xtask demo --port PORT`, run as the README says, with everything it prints kept.
/// Dropped, it stops the server by its process id.
struct Demo {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    served: mpsc::Receiver<(String, u32)>,
    server_pid: Option<u32>,
}

/// The address and process id in the line `cargo xtask demo` prints once it serves the page:
/// "xtask: the demo page is at http://127.0.0.1:PORT/ (served from dist/ by process PID; …".
fn served_at(line: &str) -> Option<(String, u32)> {
    let rest = line.strip_prefix("xtask: the demo page is at ")?;
    let url = rest.split_whitespace().next()?.to_string();
    let pid = rest.split("by process ").nth(1)?;
    let pid = pid[..pid.find(|c: char| !c.is_ascii_digit())?]
        .parse()
        .ok()?;
    Some((url, pid))
}

impl Demo {
    fn start(port: u16) -> Demo {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut child = Command::new(cargo)
            .args(["xtask", "demo", "--port", &port.to_string()])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cargo runs");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (found, served) = mpsc::channel();
        let streams: [Box<dyn std::io::Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for stream in streams {
            let (output, found) = (Arc::clone(&output), found.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if let Some(at) = served_at(&line) {
                        let _ = found.send(at);
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        Demo {
            child,
            output,
            served,
            server_pid: None,
        }
    }

    fn printed(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// The page's address once the command serves it (building first when needed).
    fn wait_until_served(&mut self, timeout: Duration) -> String {
        let started = Instant::now();
        loop {
            if let Ok((url, pid)) = self.served.recv_timeout(Duration::from_millis(500)) {
                self.server_pid = Some(pid);
                return url;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "`cargo xtask demo` ended ({status}) without serving the page:\n{}",
                    self.printed()
                );
            }
            assert!(
                started.elapsed() < timeout,
                "`cargo xtask demo` did not serve the page within {timeout:?}:\n{}",
                self.printed()
            );
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // By the process id the command printed (cargo runs the task in its own process on
        // Unix, so it is this child; elsewhere it is a child of it).
        if let Some(pid) = self.server_pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "1 face: 75.3 ± 9.8 years": the estimate and its spread.
fn one_face_in_status(status: &str) -> Option<(f64, f64)> {
    let rest = status.strip_prefix("1 face: ")?.strip_suffix(" years")?;
    let (age, sigma) = rest.split_once(" ± ")?;
    Some((age.parse().ok()?, sigma.parse().ok()?))
}

/// The README's first command, run as a new user runs it on a fresh clone (no exported
/// streams): `cargo xtask demo` builds the page and serves it, and headless Chromium, with a
/// fake camera playing a portrait, shows what a visitor checks: one face with an estimate in the
/// status line, the backend named, no error.
#[test]
fn cargo_xtask_demo_serves_a_page_that_starts_and_estimates() {
    let _dist = dist_lock();
    let dir = tempfile::tempdir().unwrap();
    let clip = portrait_clip(dir.path());
    let mut demo = Demo::start(free_port());
    let url = demo.wait_until_served(Duration::from_secs(40 * 60));
    assert_eq!(
        demo.server_pid,
        Some(demo.child.id()),
        "the page should be served by the process `cargo xtask demo` became:\n{}",
        demo.printed()
    );
    let missing = ureq::get(&format!("{url}models/streams/no-such-stream/stream.json")).call();
    assert!(
        matches!(missing, Err(ureq::Error::Status(404, _))),
        "a missing file must be a 404, got {missing:?}"
    );

    let browser = Browser::start(&[
        "--enable-unsafe-webgpu".to_string(),
        "--use-fake-device-for-media-stream".to_string(),
        "--use-fake-ui-for-media-stream".to_string(),
        format!("--use-file-for-fake-video-capture={}", clip.display()),
    ])
    .unwrap();
    browser.open(&format!("{url}?start=camera")).unwrap();
    let started = Instant::now();
    let seen = loop {
        let seen = Seen::of(&browser).unwrap();
        if one_face_in_status(&seen.status).is_some()
            || seen.status_class == "error"
            || !seen.errors().is_empty()
            || started.elapsed() > Duration::from_secs(300)
        {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if let Ok(png) = browser.screenshot() {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-command.png");
        let _ = std::fs::write(&path, png);
        eprintln!("screenshot: {}", path.display());
    }
    assert!(
        seen.errors().is_empty() && seen.status_class != "error",
        "the page shows an error: {seen:#?}"
    );
    let (age, sigma) = one_face_in_status(&seen.status)
        .unwrap_or_else(|| panic!("no face with an estimate after 300 s: {seen:#?}"));
    assert!((1.0..=100.0).contains(&age) && sigma > 0.0, "{seen:#?}");
    assert!(
        seen.backend == "WebGPU" || seen.backend.starts_with("CPU"),
        "the backend is not named: {seen:#?}"
    );
    eprintln!(
        "`cargo xtask demo`: {} on {} after {:.1} s",
        seen.status,
        seen.backend,
        started.elapsed().as_secs_f64()
    );

    drop(browser);
    drop(demo);
    assert!(
        ureq::get(&url)
            .timeout(Duration::from_secs(5))
            .call()
            .is_err(),
        "the server still answers after it was stopped"
    );
}

#[test]
fn the_servers_targets_map_to_files_inside_the_page_only() {
    use page::serve::file_for;
    let root = Path::new("/srv/page");
    assert_eq!(file_for(root, "/"), Some(root.join("index.html")));
    assert_eq!(
        file_for(root, "/models/streams/index.json?x=1"),
        Some(root.join("models/streams/index.json"))
    );
    assert_eq!(file_for(root, "/a%20b.js"), Some(root.join("a b.js")));
    assert_eq!(file_for(root, "/../etc/passwd"), None);
    assert_eq!(file_for(root, "/models/%2e%2e/%2e%2e/x"), None);
    assert_eq!(file_for(root, "/bad%zz"), None);
}
